-- wrk script: every request carries "X-Request-Id: <counter>", so no two
-- request heads are alike and the server's parse memo caches always miss.
local counter = 0

request = function()
   counter = counter + 1
   return wrk.format(nil, nil, {["X-Request-Id"] = tostring(counter)})
end
