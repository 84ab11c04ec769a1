-- ARGV: prefix, id, secret hash, now, cap, then four lists, each as its length and its items:
-- added files (name, size, sha256, lower-cased name, pieces_root each), removed names,
-- partial files (sha256, size, pieces_root each), removed partial digests.
local id = ARGV[2]
local err = authorize(id, ARGV[3], tonumber(ARGV[4]))
if err then
  return err
end
local cap = tonumber(ARGV[5])
local at = 6
-- The first and last ARGV index of the next list of `stride`-sized items.
local function list(stride)
  local first = at + 1
  at = first + tonumber(ARGV[at]) * stride
  return first, at - 1
end
local add1, add2 = list(5)
local rem1, rem2 = list(1)
local padd1, padd2 = list(3)
local prem1, prem2 = list(1)
local fk = P .. "files:" .. id
local pk = P .. "partials:" .. id
-- The count after the change, before anything is written.
local count = redis.call("HLEN", fk) + redis.call("HLEN", pk)
local gone = {}
for i = rem1, rem2 do
  local n = ARGV[i]
  if not gone[n] and redis.call("HEXISTS", fk, n) == 1 then
    gone[n] = true
    count = count - 1
  end
end
for i = add1, add2, 5 do
  if gone[ARGV[i]] or redis.call("HEXISTS", fk, ARGV[i]) == 0 then
    count = count + 1
  end
end
local pgone = {}
for i = prem1, prem2 do
  local d = ARGV[i]
  if not pgone[d] and redis.call("HEXISTS", pk, d) == 1 then
    pgone[d] = true
    count = count - 1
  end
end
local pnew = {}
for i = padd1, padd2, 3 do
  local d = ARGV[i]
  pnew[d] = true
  if pgone[d] or redis.call("HEXISTS", pk, d) == 0 then
    count = count + 1
  end
end
-- A digest announced complete is no longer held in part.
local completed = {}
for i = add1, add2, 5 do
  local d = ARGV[i + 2]
  if not completed[d] then
    completed[d] = true
    if pnew[d] or (not pgone[d] and redis.call("HEXISTS", pk, d) == 1) then
      count = count - 1
    end
  end
end
if count > cap then
  return "overcap:" .. string.format("%d", count)
end
for i = rem1, rem2 do
  local v = redis.call("HGET", fk, ARGV[i])
  if v then
    unindex_file(id, ARGV[i], v)
  end
end
for i = add1, add2, 5 do
  local v = redis.call("HGET", fk, ARGV[i])
  if v then
    unindex_file(id, ARGV[i], v)
  end
  index_file(id, ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4])
end
for i = prem1, prem2 do
  set_partial(id, ARGV[i], nil)
end
for i = padd1, padd2, 3 do
  set_partial(id, ARGV[i], ARGV[i + 1] .. ":" .. ARGV[i + 2])
end
for i = add1, add2, 5 do
  set_partial(id, ARGV[i + 2], nil)
end
return "ok:" .. string.format("%d", count)
