-- wrk script: browser-like request heads that differ on every request.
-- Each request carries a User-Agent, Accept, Accept-Language,
-- Accept-Encoding, a Cookie and an X-Request-Id, and every one of them
-- changes from one request to the next (a counter is folded into each), so
-- no memo of heads, header blocks or header lines can hit.
-- usage: wrk ... -s browser_heads.lua URL
local n = 0
local langs = {"en-US,en;q=0.9", "de-DE,de;q=0.9,en;q=0.8", "fr-FR,fr;q=0.9,en-US;q=0.8,en;q=0.7",
               "ja,en-US;q=0.9,en;q=0.8", "es-ES,es;q=0.9"}
local encs = {"gzip, deflate, br", "gzip, deflate, br, zstd", "br, gzip", "gzip, deflate"}

request = function()
   n = n + 1
   local headers = {
      ["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0."
         .. (n % 10000) .. ".85 Safari/537.36",
      ["Accept"] = "text/html,application/xhtml+xml,application/xml;q=0." .. (n % 9 + 1)
         .. ",image/avif,image/webp,*/*;q=0.8",
      ["Accept-Language"] = langs[n % #langs + 1] .. ";v=" .. (n % 97),
      ["Accept-Encoding"] = encs[n % #encs + 1] .. ";r=" .. (n % 89),
      ["Cookie"] = "session=" .. string.format("%08x", n * 2654435761 % 4294967296)
         .. "; theme=dark; _ga=GA1.1." .. n,
      ["X-Request-Id"] = string.format("%016x", n),
   }
   return wrk.format(nil, nil, headers)
end
