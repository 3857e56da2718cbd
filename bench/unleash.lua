-- bench/unleash.lua: wrk script for GET requests to an Unleash frontend API
-- whose context (query parameters) changes every request (1,000 users, two
-- countries), with the client key in Authorization.
local n = 0
request = function()
    n = n + 1
    local path = string.format("%s?userId=user-%d&properties%%5Bcountry%%5D=%s&properties%%5Bplan%%5D=%s",
                               wrk.path, n % 1000, (n % 2 == 0) and "DE" or "US", (n % 3 == 0) and "pro" or "free")
    return wrk.format("GET", path, {["Authorization"] = "bench-secret"})
end
