# A headless python3-libtorrent peer for interop tests.
#   lt_client.py seed|leech TORRENT SAVE_DIR LISTEN_IP:PORT [PEER_IP:PORT ...]
# TORRENT may be a magnet link (leech only): the metadata then comes from peers.
# Prints one JSON status line a second; a leecher exits 0 when finished.
import json
import sys
import time

import libtorrent as lt

mode, torrent, save, iface = sys.argv[1:5]
peers = sys.argv[5:]
ip = iface.rsplit(":", 1)[0]
settings = {
    "listen_interfaces": iface,
    "outgoing_interfaces": ip,
    "enable_dht": False,
    "enable_lsd": False,
    "enable_upnp": False,
    "enable_natpmp": False,
    # uTP on loopback crawls; we speak TCP.
    "enable_outgoing_utp": False,
    "enable_incoming_utp": False,
    "allow_multiple_connections_per_ip": True,
    "user_agent": "libtorrent-interop",
}
s = lt.session(settings)
if torrent.startswith("magnet:"):
    atp = lt.parse_magnet_uri(torrent)
else:
    atp = lt.add_torrent_params()
    atp.ti = lt.torrent_info(torrent)
atp.save_path = save
if mode == "seed":
    atp.flags |= lt.torrent_flags.seed_mode
h = s.add_torrent(atp)
for p in peers:
    host, port = p.rsplit(":", 1)
    h.connect_peer((host, int(port)))
while True:
    st = h.status()
    print(json.dumps({"state": str(st.state), "progress": st.progress, "peers": st.num_peers,
                      "down": st.total_payload_download, "up": st.total_payload_upload,
                      "finished": st.is_finished, "has_metadata": st.has_metadata}), flush=True)
    if mode == "leech" and st.is_finished:
        sys.exit(0)
    time.sleep(1)
