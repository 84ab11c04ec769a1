-- Shared by every script: the key layout and the index upkeep. ARGV[1] is the key prefix.
-- peer:<id>        hash  addr, secret (SHA-256 hex of the lease secret), exp (unix ms)
-- leases           zset  id -> exp            (the sweeper's view; ZCARD = peer count)
-- files:<id>       hash  name -> sha256 .. size
-- keys             zset  "name\0sha256", all scores 0 (lexical order = page order; ZCARD = file count)
-- holders:<key>    hash  peer id -> size
-- digest:<sha256>  hash  peer id -> how many of its names carry these bytes
-- roots:<sha256>   hash  peer id -> the pieces_root it announced last with these bytes (kept
--                        apart from holders:<key>, whose values trackers before roots read)
-- sizes            hash  sha256 -> size
-- names            hash  name -> how many digests are shared under it
-- lower            hash  name -> lower-cased name (computed by the tracker: Unicode-aware)
-- tri:<3 bytes>    zset  names whose lower-cased form holds these bytes, all scores 0
-- partials:<id>    hash  sha256 -> size .. ":" .. pieces_root (what the peer holds in part)
-- pholders:<sha256> hash peer id -> size .. ":" .. pieces_root (who holds these bytes in part)
-- npartial         string  how many (peer, sha256) partial holdings there are
local P = ARGV[1]

local function index_file(id, name, size, sha, low, root)
  local key = name .. "\0" .. sha
  local hk = P .. "holders:" .. key
  redis.call("HSET", hk, id, size)
  if redis.call("HLEN", hk) == 1 then
    redis.call("ZADD", P .. "keys", 0, key)
    if redis.call("HINCRBY", P .. "names", name, 1) == 1 then
      redis.call("HSET", P .. "lower", name, low)
      for i = 1, #low - 2 do
        redis.call("ZADD", P .. "tri:" .. string.sub(low, i, i + 2), 0, name)
      end
    end
  end
  redis.call("HINCRBY", P .. "digest:" .. sha, id, 1)
  redis.call("HSET", P .. "roots:" .. sha, id, root)
  redis.call("HSET", P .. "sizes", sha, size)
  redis.call("HSET", P .. "files:" .. id, name, sha .. size)
end

local function unindex_file(id, name, value)
  local sha = string.sub(value, 1, 64)
  local key = name .. "\0" .. sha
  local hk = P .. "holders:" .. key
  redis.call("HDEL", hk, id)
  if redis.call("EXISTS", hk) == 0 then
    redis.call("ZREM", P .. "keys", key)
    if redis.call("HINCRBY", P .. "names", name, -1) <= 0 then
      redis.call("HDEL", P .. "names", name)
      local low = redis.call("HGET", P .. "lower", name)
      if low then
        for i = 1, #low - 2 do
          redis.call("ZREM", P .. "tri:" .. string.sub(low, i, i + 2), name)
        end
        redis.call("HDEL", P .. "lower", name)
      end
    end
  end
  local dk = P .. "digest:" .. sha
  if redis.call("HINCRBY", dk, id, -1) <= 0 then
    redis.call("HDEL", dk, id)
    redis.call("HDEL", P .. "roots:" .. sha, id)
    if redis.call("EXISTS", dk) == 0 then
      redis.call("HDEL", P .. "sizes", sha)
    end
  end
  redis.call("HDEL", P .. "files:" .. id, name)
end

-- Makes `id` hold `sha` in part as `value` (size:root), or not at all when value is nil.
local function set_partial(id, sha, value)
  local pk = P .. "partials:" .. id
  local hk = P .. "pholders:" .. sha
  if value then
    if redis.call("HSET", pk, sha, value) == 1 then
      redis.call("INCR", P .. "npartial")
    end
    redis.call("HSET", hk, id, value)
  elseif redis.call("HDEL", pk, sha) == 1 then
    redis.call("HDEL", hk, id)
    redis.call("DECR", P .. "npartial")
  end
end

local function remove_peer(id)
  local fk = P .. "files:" .. id
  local all = redis.call("HGETALL", fk)
  for i = 1, #all, 2 do
    unindex_file(id, all[i], all[i + 1])
  end
  local pk = P .. "partials:" .. id
  for _, sha in ipairs(redis.call("HKEYS", pk)) do
    set_partial(id, sha, nil)
  end
  redis.call("DEL", fk, P .. "peer:" .. id)
  redis.call("ZREM", P .. "leases", id)
end

-- nil when the lease of `id` is live at `now` and `hash` is its secret's hash.
local function authorize(id, hash, now)
  local rec = redis.call("HMGET", P .. "peer:" .. id, "secret", "exp")
  if not rec[1] or tonumber(rec[2]) <= now then
    return "unknown"
  end
  -- Both sides are SHA-256 digests: timing reveals nothing about the secret itself.
  if hash == "" or rec[1] ~= hash then
    return "wrong"
  end
  return nil
end
