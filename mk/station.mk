# station (issue 6): MQTT publishing links libmosquitto; the dashboard page is embedded in
# daemon/dashboard.c with .incbin, so its object depends on the HTML file.
DAEMON_PKGS += libmosquitto
$(BUILD)/obj/daemon/dashboard.o $(BUILD)/san/daemon/dashboard.o: daemon/dashboard.html
# webhooks (issue 20): libcurl POSTs (loaded on first use: DLOPEN_PKGS in the Makefile),
# nettle (already loaded with GnuTLS by libmicrohttpd) for their HMAC-SHA256 signature
DAEMON_PKGS += nettle
# detection spectrograms (issue 20): PNG through libpng
DAEMON_PKGS += libpng
