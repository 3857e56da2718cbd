-- bench/ofrep.lua: wrk script for POST requests with a JSON body whose
-- context changes every request (1,000 users, two countries), so that no
-- answer is the previous one's.  The path comes from the command line URL.
local n = 0
request = function()
    n = n + 1
    local body = string.format('{"context": {"targetingKey": "user-%d", "country": "%s", "plan": "%s"}}',
                               n % 1000, (n % 2 == 0) and "DE" or "US", (n % 3 == 0) and "pro" or "free")
    return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
