package cluster

import "github.com/redis/go-redis/v9"

// The Lua scripts. Each touches only the keys it is given, all of one
// hash tag. go-redis runs them by SHA and loads them again when Redis lost
// them (a restart).

// scriptPublish appends one publication; see the package doc.
//
//	KEYS[1] meta (hash: e = epoch, o = offset), KEYS[2] stream
//	ARGV[1] a fresh epoch, used only when the meta is missing
//	ARGV[2] data, ARGV[3] info JSON or "", ARGV[4] time in ms
//	ARGV[5] history size, ARGV[6] history ttl in ms (0: none)
//	ARGV[7] meta ttl in ms, ARGV[8] the topic's channel
//	ARGV[9] the event name, "" for the default (absent from older callers)
//	KEYS[3] (idempotent publications only) the publication's record (hash
//	f = fingerprint, e = epoch, o = offset), ARGV[10] the request's
//	fingerprint, ARGV[11] the record's ttl in ms
//
// An idempotent publication checks its record first: when it exists, the
// script appends and publishes nothing and returns {epoch, offset, 1,
// fingerprint} as recorded; otherwise it writes the record last, after the
// PUBLISH, in the same script (one step for Redis: a node dying around it
// leaves either no publication and no record, or both).
//
// The stream entry holds d (data), t (time), i (info, when set) and e (the
// event name, when set: an entry without e is the default event). The
// pub/sub message is epoch|offset|time|len(info)|info data, or with an event
// name epoch|offset|time|len(info):len(event)|info event data (the default
// event keeps the first form, which nodes without event names read).
//
// It returns {epoch, offset}. An XADD refused because the stream is ahead
// of the offset means the offset went backwards under this epoch (the meta
// was restored older than the stream): the topic starts a new epoch.
var scriptPublish = redis.NewScript(publishSource)

// publishSource is scriptPublish's text (PublishBatch loads it in its pipeline).
const publishSource = `
local ev = ARGV[9] or ''
if KEYS[3] then
  local r = redis.call('HMGET', KEYS[3], 'f', 'e', 'o')
  if r[1] then
    return {r[2], tonumber(r[3]), 1, r[1]}
  end
end
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[1], KEYS[2])
  redis.call('HSET', KEYS[1], 'e', epoch)
end
local off = redis.call('HINCRBY', KEYS[1], 'o', 1)
local size = tonumber(ARGV[5])
if size > 0 then
  local fields = {'d', ARGV[2], 't', ARGV[4]}
  if ARGV[3] ~= '' then
    fields[#fields + 1] = 'i'
    fields[#fields + 1] = ARGV[3]
  end
  if ev ~= '' then
    fields[#fields + 1] = 'e'
    fields[#fields + 1] = ev
  end
  local res = redis.pcall('XADD', KEYS[2], 'MAXLEN', size, off .. '-0', unpack(fields))
  if type(res) == 'table' and res.err then
    epoch = ARGV[1]
    off = 1
    redis.call('DEL', KEYS[1], KEYS[2])
    redis.call('HSET', KEYS[1], 'e', epoch, 'o', off)
    redis.call('XADD', KEYS[2], 'MAXLEN', size, '1-0', unpack(fields))
  end
  local ttl = tonumber(ARGV[6])
  if ttl > 0 then
    redis.call('PEXPIRE', KEYS[2], ttl)
  else
    redis.call('PERSIST', KEYS[2])
  end
else
  redis.call('DEL', KEYS[2])
end
redis.call('PEXPIRE', KEYS[1], ARGV[7])
local lens = string.len(ARGV[3])
if ev ~= '' then
  lens = lens .. ':' .. string.len(ev)
end
redis.call('PUBLISH', ARGV[8], epoch .. '|' .. off .. '|' .. ARGV[4] .. '|' .. lens .. '|' .. ARGV[3] .. ev .. ARGV[2])
if KEYS[3] then
  redis.call('HSET', KEYS[3], 'f', ARGV[10], 'e', epoch, 'o', off)
  redis.call('PEXPIRE', KEYS[3], ARGV[11])
end
return {epoch, off}
`

// scriptRead returns a topic's position and, optionally, a range of its
// stream, consistently; it creates the topic's epoch when the meta is
// missing, so that a position read before the first publication stays
// valid.
//
//	KEYS[1] meta, KEYS[2] stream
//	ARGV[1] a fresh epoch, ARGV[2] meta ttl in ms
//	ARGV[3] first entry id wanted, or "" for no entries
//	ARGV[4] last entry id wanted ("+": the end), ARGV[5] count (0: all)
//
// It returns {epoch, offset, oldest retained offset (0: none), entries}.
var scriptRead = redis.NewScript(`
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'e', epoch, 'o', 0)
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
local off = tonumber(redis.call('HGET', KEYS[1], 'o') or '0')
local oldest = 0
local first = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
if #first > 0 then
  oldest = tonumber(string.match(first[1][1], '^(%d+)'))
end
local entries = {}
if ARGV[3] ~= '' then
  if tonumber(ARGV[5]) > 0 then
    entries = redis.call('XRANGE', KEYS[2], ARGV[3], ARGV[4], 'COUNT', ARGV[5])
  else
    entries = redis.call('XRANGE', KEYS[2], ARGV[3], ARGV[4])
  end
end
return {epoch, off, oldest, entries}
`)

// scriptPresenceAdd adds or refreshes a presence entry; both keys live as
// long as their longest-lived entry. Redis's clock decides expiry, so that
// nodes' clocks need not agree.
//
//	KEYS[1] hash client → info, KEYS[2] sorted set client → expiry (ms)
//	ARGV[1] client, ARGV[2] info JSON, ARGV[3] ttl in ms
var scriptPresenceAdd = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
local ttl = math.max(1, tonumber(last[2]) - now)
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
return 1
`)

// scriptPresence drops the expired entries and returns the rest (HGETALL).
var scriptPresence = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for _, id in ipairs(dead) do
  redis.call('HDEL', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
end
return redis.call('HGETALL', KEYS[1])
`)

// scriptPresenceRemove removes one entry.
var scriptPresenceRemove = redis.NewScript(`
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
`)

// scriptDeviceClaim records that a node holds a device's newest
// connection: node, boot id and a generation that grows with every claim
// (its counter outlives the claim), for ttl. It returns the generation and
// the node of the claim it replaced (” when none).
//
//	KEYS[1] the claim (hash n, b, g), KEYS[2] the generation counter
//	ARGV[1] node, ARGV[2] boot id, ARGV[3] ttl in ms
var scriptDeviceClaim = redis.NewScript(`
local prev = redis.call('HGET', KEYS[1], 'n') or ''
local g = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], 86400000)
redis.call('HSET', KEYS[1], 'n', ARGV[1], 'b', ARGV[2], 'g', g)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {g, prev}
`)

// scriptDeviceRefresh extends a claim if it is still the node's of the
// generation; a missing claim is recreated unless the counter shows a newer
// claim was made since (Redis lost both: the counter is raised to gen).
// 1 refreshed, 0 a newer claim exists.
//
//	KEYS[1] the claim, KEYS[2] the generation counter
//	ARGV[1] node, ARGV[2] boot id, ARGV[3] generation, ARGV[4] ttl in ms
var scriptDeviceRefresh = redis.NewScript(`
local c = redis.call('HMGET', KEYS[1], 'n', 'g')
if c[1] then
  if c[1] ~= ARGV[1] or c[2] ~= ARGV[3] then return 0 end
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  return 1
end
local cur = tonumber(redis.call('GET', KEYS[2]) or '0')
if cur > tonumber(ARGV[3]) then return 0 end
redis.call('SET', KEYS[2], ARGV[3], 'PX', 86400000)
redis.call('HSET', KEYS[1], 'n', ARGV[1], 'b', ARGV[2], 'g', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
`)

// scriptDeviceClear removes a claim if it is still the node's of the
// generation.
var scriptDeviceClear = redis.NewScript(`
local c = redis.call('HMGET', KEYS[1], 'n', 'g')
if c[1] == ARGV[1] and c[2] == ARGV[2] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// Idempotency records: a hash s = started (ms), d = 0 pending / 1 done,
// b = body, expiring with the record's ttl.

// scriptIdemBegin claims a record or returns it: {fresh, done, body, started}.
var scriptIdemBegin = redis.NewScript(`
local r = redis.call('HMGET', KEYS[1], 's', 'd', 'b')
if r[1] then
  return {0, r[2], r[3] or '', r[1]}
end
redis.call('HSET', KEYS[1], 's', ARGV[1], 'd', '0')
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {1, '0', '', ARGV[1]}
`)

// scriptIdemFinish stores the body of a pending record: 1 done, 0 absent,
// -1 already finished.
var scriptIdemFinish = redis.NewScript(`
local d = redis.call('HGET', KEYS[1], 'd')
if not d then return 0 end
if d == '1' then return -1 end
redis.call('HSET', KEYS[1], 'd', '1', 'b', ARGV[1])
return 1
`)

// scriptIdemAbort deletes a pending record: 1 done, 0 absent, -1 finished.
var scriptIdemAbort = redis.NewScript(`
local d = redis.call('HGET', KEYS[1], 'd')
if not d then return 0 end
if d == '1' then return -1 end
redis.call('DEL', KEYS[1])
return 1
`)

// scriptRollback starts a new epoch for a topic whose offset went backwards
// under its epoch: Redis came back from a snapshot older than what a node
// delivered (RDB, or an AOF fsynced every second), and the offsets after
// it would be reused for other publications. It does nothing when the
// epoch moved on meanwhile or the offset is not behind.
//
//	KEYS[1] meta, KEYS[2] stream
//	ARGV[1] the epoch, ARGV[2] the offset a node delivered, ARGV[3] a fresh
//	epoch, ARGV[4] meta ttl in ms
var scriptRollback = redis.NewScript(`
local e = redis.call('HGET', KEYS[1], 'e')
local o = tonumber(redis.call('HGET', KEYS[1], 'o') or '0')
if e == ARGV[1] and o < tonumber(ARGV[2]) then
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'e', ARGV[3], 'o', 0)
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  return 1
end
return 0
`)
