package store

import "github.com/redis/go-redis/v9"

// The Redis store's steps, each one Lua script so that Redis runs it
// atomically: no other instance sees half a step, and a step's checks
// and writes cannot be split by another's.
//
// Keys, under the prefix p (ARGV[1] of every script):
//
//	p.."seq"            counter: items' order of acceptance and claims' tokens
//	p.."pending"        counter: items accepted and not ended
//	p.."due"            sorted set: openid by when its lane is due (the
//	                    head's next try, or the end of the lease while claimed)
//	p.."lease"          hash: openid → token of the claim holding the lane
//	p.."lane:"..openid  list: the user's waiting item IDs, oldest first
//	p.."item:"..id      hash: one item (expires Retention after it ended)
//	p.."body:"..id      the item's payload, while it waits: apart from the
//	                    hash, which a value over 64 bytes would turn from
//	                    Redis's compact encoding into a hash table
//	p.."mark:"..key     hash: retry-dedupe mark {exp, answer}
//	p.."idem:"..key     hash: Idempotency-Key {exp, fp, ids}
//	p.."q:"..query      hash: a signed callback query {exp, body hash}
//	p.."win:"..openid   hash: the window {last, closed, closed_at}
//	p.."pause"          the end of the 45009 pause
//	p.."msgid:"..msgid  the item ID of a template msgid
//	p.."early:"..msgid  hash: a template report that overtook its send
//	p.."media:"..key    hash: an uploaded file's media_id
//	p.."st:"..openid    the user's conversation state: "EXPIRES:NAME"
//	p.."token", p.."token:lock"   the shared access token and its fetch lock
//
// The keys a script touches are built from the prefix inside it, which
// needs one Redis (with replicas or Sentinel if wanted), not a Cluster.
//
// Times are Unix milliseconds passed in by the caller and compared by the
// scripts, as the Store interface wants; a key's own expiry (PEXPIRE) is
// only its garbage collection, set to at least its logical life.

// luaLib holds the helpers the scripts share.
const luaLib = `
local p = ARGV[1]

-- held: whether the claim (openid, id, token) still holds the lane: its
-- lease's token is the claim's, its item is the lane's head and waiting.
local function held(openid, id, token)
	if redis.call('HGET', p..'lease', openid) ~= token then return false end
	if redis.call('LINDEX', p..'lane:'..openid, 0) ~= id then return false end
	return redis.call('HGET', p..'item:'..id, 'state') == '0'
end

-- advance: the lane of openid is due for its next item, or gone.
local function advance(openid)
	local nid = redis.call('LINDEX', p..'lane:'..openid, 0)
	if not nid then
		redis.call('ZREM', p..'due', openid)
		return
	end
	local nx = redis.call('HGET', p..'item:'..nid, 'next') or '0'
	redis.call('ZADD', p..'due', nx, openid)
end
`

// acceptScript: ARGV = p, now, dedupe, dedupe ttl, answer, idem key, idem
// fingerprint, idem ttl, idem ids (JSON), touch openid, touch grain,
// window ttl, query, query body hash, query ttl, clear-state openid,
// set-state openid, state name, state ttl, then six per item: id,
// openid, msgtype, rule, in_msg_id, payload. Answers {"ok"},
// {"conflict"}, {"idem", ids}, {"mark", answer}, {"reused"} or {"taken",
// id}.
var acceptScript = redis.NewScript(luaLib + `
local now = tonumber(ARGV[2])
local dedupe, dttl, answer = ARGV[3], tonumber(ARGV[4]), ARGV[5]
local ikey, ifp, ittl, iids = ARGV[6], ARGV[7], tonumber(ARGV[8]), ARGV[9]
local touch, grain, wttl = ARGV[10], tonumber(ARGV[11]), tonumber(ARGV[12])
local query, qbody, qttl = ARGV[13], ARGV[14], tonumber(ARGV[15])
local sclear, sset, sname, sttl = ARGV[16], ARGV[17], ARGV[18], tonumber(ARGV[19])
local first = 20

if ikey ~= '' then
	local v = redis.call('HMGET', p..'idem:'..ikey, 'exp', 'fp', 'ids')
	if v[1] and tonumber(v[1]) > now then
		if v[2] ~= ifp then return {'conflict'} end
		return {'idem', v[3]}
	end
end
if query ~= '' then
	local k = p..'q:'..query
	local v = redis.call('HMGET', k, 'exp', 'body')
	if v[1] and tonumber(v[1]) > now then
		if v[2] ~= qbody then return {'reused'} end
	else
		redis.call('HSET', k, 'exp', now + qttl, 'body', qbody)
		redis.call('PEXPIRE', k, qttl)
	end
end
if dedupe ~= '' then
	local v = redis.call('HMGET', p..'mark:'..dedupe, 'exp', 'answer')
	if v[1] and tonumber(v[1]) > now then return {'mark', v[2] or ''} end
end
for b = first, #ARGV, 6 do
	if redis.call('EXISTS', p..'item:'..ARGV[b]) == 1 then return {'taken', ARGV[b]} end
end

if dedupe ~= '' then
	local k = p..'mark:'..dedupe
	redis.call('HSET', k, 'exp', now + dttl, 'answer', answer)
	redis.call('PEXPIRE', k, dttl)
end
if touch ~= '' then
	local k = p..'win:'..touch
	local v = redis.call('HMGET', k, 'last', 'closed', 'closed_at')
	if not v[1] then
		redis.call('HSET', k, 'last', now, 'closed', 0, 'closed_at', 0)
		redis.call('PEXPIRE', k, wttl)
	else
		local last, closed, cat = tonumber(v[1]), v[2] == '1', tonumber(v[3])
		-- A later interaction moves last, and reopens a window closed by
		-- a 45015 to an earlier call; one within the grain changes nothing
		-- unless it reopens.
		if now > last + grain or (closed and now > cat) then
			local c = 0
			if closed and now <= cat then c = 1 end
			redis.call('HSET', k, 'last', now, 'closed', c)
			redis.call('PEXPIRE', k, wttl)
		end
	end
end
if sclear ~= '' then redis.call('DEL', p..'st:'..sclear) end
if sset ~= '' then
	-- The expiry in the value is the state's logical end, compared with
	-- the caller's now; PX only collects the key.
	redis.call('SET', p..'st:'..sset, (now + sttl)..':'..sname, 'PX', sttl)
end
local n = (#ARGV - first + 1) / 6
if n > 0 then
	local seq = redis.call('INCRBY', p..'seq', n) - n
	for b = first, #ARGV, 6 do
		seq = seq + 1
		local id, openid = ARGV[b], ARGV[b+1]
		redis.call('HSET', p..'item:'..id, 'seq', seq, 'openid', openid, 'state', 0,
			'msgtype', ARGV[b+2], 'rule', ARGV[b+3], 'in', ARGV[b+4],
			'attempts', 0, 'next', now, 'created', now, 'updated', now)
		redis.call('SET', p..'body:'..id, ARGV[b+5])
		if redis.call('RPUSH', p..'lane:'..openid, id) == 1 then
			-- A new lane is due at once; one already there (claimed, or
			-- parked behind a retry) stays as it is.
			redis.call('ZADD', p..'due', 'NX', now, openid)
		end
	end
	redis.call('INCRBY', p..'pending', n)
end
if ikey ~= '' then
	local k = p..'idem:'..ikey
	redis.call('HSET', k, 'exp', now + ittl, 'fp', ifp, 'ids', iids)
	redis.call('PEXPIRE', k, ittl)
end
return {'ok'}
`)

// claimScript: ARGV = p, now, max, lease. Answers {next, then per claim:
// openid, token, id, seq, msgtype, rule, in, attempts, last_error,
// created, next, the payload, window last, window closed}; next is
// the end of the pause while paused, else the earliest lane still due
// (0: none).
var claimScript = redis.NewScript(luaLib + `
local now, max, lease = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local pause = tonumber(redis.call('GET', p..'pause') or '0')
if pause > now then return {pause} end
local out = {0}
local due = redis.call('ZRANGEBYSCORE', p..'due', '-inf', now, 'LIMIT', 0, max)
for _, openid in ipairs(due) do
	local id = redis.call('LINDEX', p..'lane:'..openid, 0)
	if not id then
		redis.call('ZREM', p..'due', openid)
		redis.call('HDEL', p..'lease', openid)
	else
		local token = redis.call('INCR', p..'seq')
		redis.call('HSET', p..'lease', openid, token)
		redis.call('ZADD', p..'due', now + lease, openid)
		out[#out+1] = openid
		out[#out+1] = token
		out[#out+1] = id
		local it = redis.call('HMGET', p..'item:'..id, 'seq', 'msgtype', 'rule', 'in', 'attempts', 'last_error', 'created', 'next')
		for i = 1, #it do out[#out+1] = it[i] or '' end
		out[#out+1] = redis.call('GET', p..'body:'..id) or ''
		local w = redis.call('HMGET', p..'win:'..openid, 'last', 'closed')
		out[#out+1] = w[1] or ''
		out[#out+1] = w[2] or ''
	end
end
local first = redis.call('ZRANGE', p..'due', 0, 0, 'WITHSCORES')
if first[2] then out[1] = tonumber(first[2]) end
return out
`)

// completeScript: ARGV = p, openid, id, token, state, reason, errcode,
// attempts, msgid, last_error, now, retention. Answers {"lost"} or {"ok",
// template status of an early report}.
var completeScript = redis.NewScript(luaLib + `
local openid, id, token = ARGV[2], ARGV[3], ARGV[4]
if not held(openid, id, token) then return {'lost'} end
local msgid, now, keep = ARGV[9], ARGV[11], tonumber(ARGV[12])
local ik = p..'item:'..id
redis.call('HSET', ik, 'state', ARGV[5], 'reason', ARGV[6], 'errcode', ARGV[7], 'attempts', ARGV[8],
	'msgid', msgid, 'last_error', ARGV[10], 'updated', now)
local ts = ''
if msgid ~= '0' then
	local ek = p..'early:'..msgid
	ts = redis.call('HGET', ek, 'status') or ''
	if ts ~= '' then
		redis.call('HSET', ik, 'tstatus', ts)
		redis.call('DEL', ek)
	end
	redis.call('SET', p..'msgid:'..msgid, id, 'PX', keep)
end
redis.call('PEXPIRE', ik, keep)
redis.call('DEL', p..'body:'..id)
redis.call('LPOP', p..'lane:'..openid)
redis.call('HDEL', p..'lease', openid)
redis.call('DECR', p..'pending')
advance(openid)
return {'ok', ts}
`)

// retryScript: ARGV = p, openid, id, token, attempts, last_error, at, now.
// releaseScript: ARGV = p, openid, id, token, now. Both answer 1, or 0
// when the claim lost its lease.
var retryScript = redis.NewScript(luaLib + `
local openid, id, token = ARGV[2], ARGV[3], ARGV[4]
if not held(openid, id, token) then return 0 end
redis.call('HSET', p..'item:'..id, 'attempts', ARGV[5], 'last_error', ARGV[6], 'next', ARGV[7], 'updated', ARGV[8])
redis.call('HDEL', p..'lease', openid)
redis.call('ZADD', p..'due', ARGV[7], openid)
return 1
`)

var releaseScript = redis.NewScript(luaLib + `
local openid, id, token = ARGV[2], ARGV[3], ARGV[4]
if not held(openid, id, token) then return 0 end
redis.call('HDEL', p..'lease', openid)
redis.call('ZADD', p..'due', ARGV[5], openid)
return 1
`)

// extendScript: ARGV = p, until, then three per claim: openid, id,
// token. Answers the IDs of the claims that lost their lease.
var extendScript = redis.NewScript(luaLib + `
local lost = {}
for b = 3, #ARGV, 3 do
	if held(ARGV[b], ARGV[b+1], ARGV[b+2]) then
		redis.call('ZADD', p..'due', ARGV[2], ARGV[b])
	else
		lost[#lost+1] = ARGV[b+1]
	end
end
return lost
`)

// closeWindowScript: ARGV = p, openid, asked, window ttl. The window
// closes unless an interaction later than the call that got the 45015 is
// recorded; closed_at keeps the latest such call.
var closeWindowScript = redis.NewScript(luaLib + `
local k, asked, wttl = p..'win:'..ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local v = redis.call('HMGET', k, 'last', 'closed_at')
if not v[1] then
	redis.call('HSET', k, 'last', 0, 'closed', 1, 'closed_at', asked)
elseif tonumber(v[1]) <= asked then
	redis.call('HSET', k, 'closed', 1, 'closed_at', math.max(tonumber(v[2]), asked))
else
	return 0
end
redis.call('PEXPIRE', k, wttl)
return 1
`)

// pauseScript: ARGV = p, until. A later pause wins.
var pauseScript = redis.NewScript(luaLib + `
local cur = tonumber(redis.call('GET', p..'pause') or '0')
if tonumber(ARGV[2]) > cur then redis.call('SET', p..'pause', ARGV[2]) end
return 1
`)

// templateScript: ARGV = p, msgid, status, now, early ttl. Answers the
// item's hash (HGETALL) with its id first, or {} when the msgid is not
// known yet and the report waits.
var templateScript = redis.NewScript(luaLib + `
local msgid = ARGV[2]
local id = redis.call('GET', p..'msgid:'..msgid)
if id then
	local ik = p..'item:'..id
	if redis.call('EXISTS', ik) == 1 then
		redis.call('HSET', ik, 'tstatus', ARGV[3], 'updated', ARGV[4])
		local out = redis.call('HGETALL', ik)
		table.insert(out, 1, id)
		return out
	end
end
local ek = p..'early:'..msgid
redis.call('HSET', ek, 'status', ARGV[3], 'at', ARGV[4])
redis.call('PEXPIRE', ek, ARGV[5])
return {}
`)

// Token scripts. dropTokenScript: ARGV = p, token; the token is forgotten
// only if it is the one kept. unlockTokenScript: ARGV = p, lock value.
var dropTokenScript = redis.NewScript(luaLib + `
if redis.call('GET', p..'token') == ARGV[2] then return redis.call('DEL', p..'token') end
return 0
`)

var unlockTokenScript = redis.NewScript(luaLib + `
if redis.call('GET', p..'token:lock') == ARGV[2] then return redis.call('DEL', p..'token:lock') end
return 0
`)

// sharedTokenScript: ARGV = p. Answers {token, ms left} or {}.
var sharedTokenScript = redis.NewScript(luaLib + `
local t = redis.call('GET', p..'token')
if not t then return {} end
return {t, redis.call('PTTL', p..'token')}
`)
