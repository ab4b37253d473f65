-- wrk script: announces spread over the info-hashes listed in $BF_HASHES
-- (40 hex digits a line) and $BF_PEERS peer ids. Peer i always announces to
-- swarm i mod #hashes from its own port, like a real client re-announcing,
-- so after the first pass every swarm holds #peers / #hashes peers.
-- 25% of the peers are seeds. Info-hashes are percent-encoded the way
-- clients do it (unreserved bytes literal, the rest %XX).

local hashes_file = os.getenv("BF_HASHES") or "hashes.txt"
local npeers = tonumber(os.getenv("BF_PEERS") or "100000")

local function encode(hex)
  return (hex:gsub("..", function(h)
    local b = tonumber(h, 16)
    local c = string.char(b)
    if c:match("[%w%-%._~]") then return c end
    return "%" .. h:upper()
  end))
end

local hashes = {}
for line in io.lines(hashes_file) do
  if #line >= 40 then hashes[#hashes + 1] = encode(line:sub(1, 40)) end
end
local nh = #hashes

local paths = {}
for i = 0, npeers - 1 do
  local port = 1024 + (i * 7) % 64000
  local left = (i % 4 == 0) and 0 or 1000
  paths[i + 1] = string.format(
    "/announce?info_hash=%s&peer_id=-BF0001-%012d&port=%d&uploaded=0&downloaded=0&left=%d&compact=1",
    hashes[(i % nh) + 1], i, port, left)
end

local thread_seed = 1
function setup(thread)
  thread:set("seed", thread_seed)
  thread_seed = thread_seed + 1
end

function init(args)
  math.randomseed(os.time() * 100 + (seed or 0))
end

function request()
  return wrk.format("GET", paths[math.random(npeers)])
end
