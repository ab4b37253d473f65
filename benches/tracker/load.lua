-- wrk script: announces $BF_PEERS distinct peers (default 1,000,000) over
-- $BF_SWARMS info-hashes (default 100,000), each thread walking its share
-- of the peers in order, then re-announcing them. Used to measure the
-- tracker's memory with a million peers. Each thread stops once it has
-- walked its share, so one run announces every peer exactly once or more.

local total = tonumber(os.getenv("BF_PEERS") or "1000000")
local nswarms = tonumber(os.getenv("BF_SWARMS") or "100000")
local nthreads = tonumber(os.getenv("BF_THREADS") or "2")

local next_id = 0
function setup(thread)
  thread:set("first", next_id)
  next_id = next_id + 1
end

local counter
function init(args)
  counter = first or 0
end

-- A 20-byte info-hash for swarm j, fully percent-encoded.
local function hash_of(j)
  local a = j
  local b = (j * 2654435761) % 4294967296
  local c = (j * 40503 + 12345) % 4294967296
  local d = (b * 69069 + 1) % 4294967296
  local e = (c * 1103515245 + 12345) % 4294967296
  local hex = string.format("%08x%08x%08x%08x%08x", a, b, c, d, e)
  return (hex:gsub("..", function(h) return "%" .. h end))
end

function response(status, headers, body)
  if counter >= total then
    wrk.thread:stop()
  end
end

function request()
  local i = counter % total
  counter = counter + nthreads
  local j = i % nswarms
  local port = 1024 + math.floor(i / nswarms) % 64000
  local left = (i % 4 == 0) and 0 or 1000
  return wrk.format("GET", string.format(
    "/announce?info_hash=%s&peer_id=-BF0001-%012d&port=%d&uploaded=0&downloaded=0&left=%d&compact=1",
    hash_of(j), i, port, left))
end
