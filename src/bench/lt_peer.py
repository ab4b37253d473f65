# A headless python3-libtorrent peer for `bitfountain bench` (written to the
# run folder and run with Debian's /usr/bin/python3, the one that sees the
# module).
#   lt_peer.py seed|leech TORRENT SAVE_DIR LISTEN_IP:PORT [PEER_IP:PORT ...]
# Prints one JSON status line a second; keeps seeding after completion, like
# every other peer in a bench, until it is stopped.
import json
import signal
import sys
import time

import libtorrent as lt

mode, torrent, save, iface = sys.argv[1:5]
peers = sys.argv[5:]
ip = iface.rsplit(":", 1)[0]
s = lt.session({
    "listen_interfaces": iface,
    "outgoing_interfaces": ip,
    "enable_dht": False,
    "enable_lsd": False,
    "enable_upnp": False,
    "enable_natpmp": False,
    # uTP crawls here; every peer of the bench speaks TCP.
    "enable_outgoing_utp": False,
    "enable_incoming_utp": False,
    "user_agent": "libtorrent-bench",
})
atp = lt.add_torrent_params()
atp.ti = lt.torrent_info(torrent)
atp.save_path = save
if mode == "seed":
    atp.flags |= lt.torrent_flags.seed_mode
h = s.add_torrent(atp)
for p in peers:
    host, port = p.rsplit(":", 1)
    h.connect_peer((host, int(port)))
running = True


def stop(*_):
    global running
    running = False


signal.signal(signal.SIGTERM, stop)
start = time.monotonic()
done_after = None
while running:
    st = h.status()
    if st.is_finished and done_after is None:
        done_after = time.monotonic() - start
    print(json.dumps({"have_bytes": st.total_wanted_done, "total_bytes": st.total_wanted,
                      "uploaded": st.total_payload_upload, "downloaded": st.total_payload_download,
                      "elapsed": time.monotonic() - start, "completed_after": done_after,
                      "phase": "seeding" if st.is_finished else "downloading"}), flush=True)
    for _ in range(10):
        if not running or (done_after is None and h.status().is_finished):
            break
        time.sleep(0.1)
