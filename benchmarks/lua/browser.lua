-- wrk script: browser-like request heads that differ on every request.
-- User-Agent, Accept, Accept-Language and Accept-Encoding rotate through
-- real-looking values; the Cookie and X-Request-Id carry a counter, so no
-- two heads are alike and no parse memo of a server can hit.
-- The same heads as benchmarks/loadgen (requests.py, loadgen.c).
local agents = {
   "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
   "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
   "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_7_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
   "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
}
local accepts = {
   "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
   "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",
   "application/json, text/plain, */*",
}
local languages = {"en-US,en;q=0.9", "de-DE,de;q=0.9,en;q=0.8", "fr-FR,fr;q=0.8,en-US;q=0.5,en;q=0.3", "ja,en-US;q=0.7,en;q=0.3"}
local encodings = {"gzip, deflate, br, zstd", "gzip, deflate"}
local counter = 0

request = function()
   local i = counter
   counter = counter + 1
   return wrk.format("GET", nil, {
      ["User-Agent"] = agents[i % 4 + 1],
      ["Accept"] = accepts[i % 3 + 1],
      ["Accept-Language"] = languages[i % 4 + 1],
      ["Accept-Encoding"] = encodings[i % 2 + 1],
      ["Cookie"] = string.format("session=%016x; theme=dark; visits=%d", i, i % 1000),
      ["X-Request-Id"] = string.format("%08x-%04x", i, i % 65536),
   })
end
