-- ARGV: prefix, id, secret hash, now.
local err = authorize(ARGV[2], ARGV[3], tonumber(ARGV[4]))
if err then
  return err
end
remove_peer(ARGV[2])
return "ok"
