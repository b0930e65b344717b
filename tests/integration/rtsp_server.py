"""A real RTSP server for the tests (GStreamer's gst-rtsp-server through python3-gi):
rtsp://127.0.0.1:PORT/birds serves a live 16 kHz mono tone as RTP L16. Prints "ready" once
it listens, then serves until killed. Usage: rtsp_server.py PORT [udp|tcp] (RTP over that
lower transport only; default: either, as the client asks)"""
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
gi.require_version("GstRtsp", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

Gst.init(None)
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(sys.argv[1])
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch("( audiotestsrc is-live=true wave=sine freq=3000 volume=0.3 ! audioconvert ! "
                   "audio/x-raw,rate=16000,channels=1,format=S16BE ! rtpL16pay name=pay0 pt=96 )")
factory.set_shared(True)
if len(sys.argv) > 2:
    factory.set_protocols({"udp": GstRtsp.RTSPLowerTrans.UDP, "tcp": GstRtsp.RTSPLowerTrans.TCP}[sys.argv[2]])
server.get_mount_points().add_factory("/birds", factory)
if server.attach(None) == 0:
    sys.exit("rtsp_server: cannot listen on port " + sys.argv[1])
print("ready", flush=True)
GLib.MainLoop().run()
