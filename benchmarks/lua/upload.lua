-- wrk script: POST a body of SIZE bytes (default 1 MiB) with every request.
-- usage: wrk ... -s upload.lua URL -- SIZE
init = function(args)
   local size = tonumber(args[1]) or 1048576
   wrk.method = "POST"
   wrk.body = string.rep("x", size)
   wrk.headers["Content-Type"] = "application/octet-stream"
end
