"""What both Redis homes of the store share: the Lua scripts of leases and writes, and the connection's
retries."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from redis.backoff import ExponentialBackoff

log = logging.getLogger(__name__)


_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""
# Fencing: every lease (a cell's claim, a listing's, a shard's walk) is held as `<token>/<holder>`,
# the token drawn from a counter that only grows (KEYS[2]). A write under a lease is checked against
# it in the same script, so one made by a holder that stalled while the lease passed on is refused.
_TAKE = """
local holder = redis.call('incr', KEYS[2]) .. '/' .. ARGV[1]
if redis.call('set', KEYS[1], holder, 'NX', 'PX', ARGV[2]) then return holder end
return false
"""
# A lease taken as its taker was cancelled: its holder's name (ARGV[1]) is known, not its token.
_GIVE_BACK = """
local held = redis.call('get', KEYS[1])
if held and string.sub(held, -#ARGV[1] - 1) == '/' .. ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
# A shard's walk: the latest to start it owns it (Kafka gave it the partition); after a store
# generation ended, only if nobody took it meanwhile (ARGV[3] '1'). Each take is a new token, also a
# take-back by the process that walked it before: its older walk's writes carry the older token.
_TAKE_SHARD = """
local holder = redis.call('incr', KEYS[1]) .. '/' .. ARGV[2]
if ARGV[3] == '1' then
  if redis.call('hsetnx', KEYS[2], ARGV[1], holder) == 0 then return false end
else
  redis.call('hset', KEYS[2], ARGV[1], holder)
end
return holder
"""
# Writes of a walk land only in the store generation (epoch) the worker reads: never in a Redis
# that lost its data and is not rebuilt yet, where a rebuild would drop or double them (-1).
# Fenced: a write made under a lease it no longer holds (a cell's claim, a listing's) is refused
# whole (3: its lookups still counted); a checkpoint is taken only while the walk owns its shard (not
# done, the walk's own token ARGV[5] the owner's): else the block found is kept, the checkpoint
# refused (2). A step with no checkpoint (a listing going on after the walk that started it ended
# here) writes none.
_RECORD_STEP = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then return -1 end
if ARGV[6] ~= '' and redis.call('get', KEYS[7]) ~= ARGV[6] then
  for i = 7, #ARGV, 2 do
    if ARGV[i] ~= 'blocks' and ARGV[i] ~= 'wasted' then
      redis.call('hincrby', KEYS[4], ARGV[i], ARGV[i + 1])
    end
  end
  redis.call('hincrby', KEYS[4], 'stale_writes_refused', 1)
  return 3
end
if ARGV[4] ~= '' then redis.call('xadd', KEYS[2], '*', 'b', ARGV[4]) end
for i = 7, #ARGV, 2 do redis.call('hincrby', KEYS[4], ARGV[i], ARGV[i + 1]) end
if ARGV[3] == '' then return 1 end
if redis.call('sismember', KEYS[6], ARGV[2]) == 1
   or (ARGV[5] ~= '' and redis.call('hget', KEYS[5], ARGV[2]) ~= ARGV[5]) then
  redis.call('hincrby', KEYS[4], 'stale_writes_refused', 1)
  return 2
end
local old = redis.call('hget', KEYS[3], ARGV[2])
if old and tonumber(string.match(old, '^%d+')) > tonumber(string.match(ARGV[3], '^%d+')) then
  redis.call('hincrby', KEYS[4], 'checkpoints_backwards', 1)
end
redis.call('hset', KEYS[3], ARGV[2], ARGV[3])
return 1
"""
# A listing ends (under its lease, else refused: 0): cut short, it is remembered as partly listed.
_LISTED = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then
  redis.call('hincrby', KEYS[3], 'stale_writes_refused', 1)
  return 0
end
if ARGV[2] == '0' then redis.call('sadd', KEYS[2], ARGV[3]) end
redis.call('del', KEYS[1])
return 1
"""
# The load's fence, opening each of its writes: only in the store generation the loader reads (else
# -1: KEYS[1] the generation, ARGV[1] the loader's), only under the load's lease (else refused, 0,
# counted: KEYS[2] the lease, ARGV[2] its holder; KEYS[5] the counters).
_UNDER_LOAD_LEASE = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then return -1 end
if redis.call('get', KEYS[2]) ~= ARGV[2] then
  redis.call('hincrby', KEYS[5], 'stale_writes_refused', 1)
  return 0
end
"""
# A batch of the published files' load (worker/sources.py), under its lease (else refused: 0): its
# blocks to the log, its progress fields set (ARGV[3] of them, pairs) and cleared (ARGV[4] names),
# its counts added (ARGV[5] pairs), all at once. Only in the store generation the loader reads (-1).
_SOURCES_WRITE = _UNDER_LOAD_LEASE + """
local i = 6
for _ = 1, tonumber(ARGV[3]) do redis.call('hset', KEYS[4], ARGV[i], ARGV[i + 1]); i = i + 2 end
for _ = 1, tonumber(ARGV[4]) do redis.call('hdel', KEYS[4], ARGV[i]); i = i + 1 end
for _ = 1, tonumber(ARGV[5]) do redis.call('hincrby', KEYS[5], ARGV[i], ARGV[i + 1]); i = i + 2 end
for j = i, #ARGV do redis.call('xadd', KEYS[3], '*', 'b', ARGV[j]) end
return 1
"""
# The fill's batches published (worker/fill.py), under the load's lease (else refused: 0): each batch
# id -> its item (ARGV[3] pairs), then the load's progress field (ARGV[-2], ARGV[-1]; '' none); counted among
# the shards (`shards_total`: the plan's and the fill's), so a crawl is done once they are answered.
_ADD_FILL = _UNDER_LOAD_LEASE + """
local n = tonumber(ARGV[3])
for i = 4, 3 + 2 * n, 2 do redis.call('hset', KEYS[3], ARGV[i], ARGV[i + 1]) end
if ARGV[#ARGV - 1] ~= '' then redis.call('hset', KEYS[4], ARGV[#ARGV - 1], ARGV[#ARGV]) end
redis.call('hset', KEYS[5], 'shards_total', redis.call('hlen', KEYS[6]) + redis.call('hlen', KEYS[3]))
return 1
"""
# A rebuild ends the store's generation, and lands, only under its lease (ARGV[1] its holder): a
# rebuilder frozen past it (SIGSTOPped, a long GC) wakes with a reading of the topics older than the
# rebuild that took over, and its plan would forget the shards finished since (their offsets
# committed, never walked again: a crawl that never finished). Refused: 0, its staged keys dropped.
_END_GENERATION = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('del', KEYS[2])
return 1
"""
# Lands a rebuild: each staged key (KEYS[5..], pairs: real, staged) replaces its real key (or
# deletes it: nothing staged), the scope (ARGV[3], '' none) and counters (ARGV[4..], pairs) are
# set, then the new generation (ARGV[2]); all at once, under the lease (KEYS[1]).
_REBUILT = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then
  for i = 5, #KEYS, 2 do redis.call('del', KEYS[i + 1]) end
  return 0
end
for i = 5, #KEYS, 2 do
  if redis.call('exists', KEYS[i + 1]) == 1 then
    redis.call('rename', KEYS[i + 1], KEYS[i])
    redis.call('persist', KEYS[i])  -- the staged key's expiry is not the landed state's
  else redis.call('del', KEYS[i]) end
end
if ARGV[3] ~= '' then redis.call('set', KEYS[4], ARGV[3]) end
for i = 4, #ARGV, 2 do redis.call('hset', KEYS[3], ARGV[i], ARGV[i + 1]) end
redis.call('set', KEYS[2], ARGV[2])
return 1
"""
# A finished shard: its checkpoint and its owner go with it. A batch of the fill keeps what it asked
# (ARGV[4], '' none) in the fill's figures (KEYS[6]), once, as it is counted done.
_SHARD_DONE = """
if ARGV[3] ~= '' and redis.call('get', KEYS[4]) ~= ARGV[3] then return -1 end
if redis.call('sadd', KEYS[1], ARGV[1]) == 1 then
  redis.call('hincrby', KEYS[2], 'shards_done', 1)
  redis.call('hincrby', KEYS[2], 'addresses_done', ARGV[2])
  if ARGV[4] ~= '' then redis.call('hset', KEYS[6], ARGV[1], ARGV[4]) end
end
redis.call('hdel', KEYS[3], ARGV[1])
redis.call('hdel', KEYS[5], ARGV[1])
return 1
"""


# Every Redis call waits out a restart (connection refused, reset) for up to ~40 s, then fails.
REDIS_RETRIES = 45


def _backoff() -> ExponentialBackoff:
    return ExponentialBackoff(cap=1.0, base=0.05)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def new_epoch() -> str:
    return uuid.uuid4().hex[:12]
