/* GET /metrics: the Prometheus page (daemon/metrics.h writes the format) from the typed
 * state of the worker, the capture and the station. */
#include <stdio.h>
#include <sys/statvfs.h>

#include "daemon/api.h"
#include "daemon/capture.h"
#include "daemon/http.h"
#include "daemon/station_impl.h"
#include "daemon/worker.h"

enum MHD_Result bsd_api_metrics(bsd_app *app, struct MHD_Connection *c, const char *url) {
    bsd_station *st = app->station;
    bsd_prom_buf b = {0};
    bsd_worker_stats wk = bsd_worker_get_stats(app->worker, 0);
    bsd_capture_stats cap = bsd_capture_get_stats(app->capture);
    bsd_worker_model_info model;
    if (bsd_worker_get_model_info(app->worker, &model) != 0)
        return bsd_http_error(c, 500, url, "out of memory building the metrics page");

    const char *build[] = {"version", BIRDSONG_VERSION, NULL};
    bsd_prom_family(&b, "birdsong_build_info", "gauge", "Build of birdsongd (always 1)");
    bsd_prom_sample(&b, "birdsong_build_info", build, 1);
    char nsp[16];
    snprintf(nsp, sizeof nsp, "%d", model.n_labels);
    const char *mi[] = {"path", model.path, "arch", model.arch, "checksum", model.checksum, "species", nsp, NULL};
    bsd_prom_family(&b, "birdsong_model_info", "gauge", "Model being served (always 1)");
    bsd_prom_sample(&b, "birdsong_model_info", mi, 1);
    bsd_prom_scalar(&b, "birdsong_uptime_seconds", "gauge", "Seconds since birdsongd started", bsd_mono_seconds() - app->started_mono);

    bsd_prom_scalar(&b, "birdsong_windows_processed_total", "counter", "Analysis windows run through the network", (double)wk.windows);
    bsd_prom_scalar(&b, "birdsong_worker_lag_seconds", "gauge", "Audio waiting in the ring for the worker", wk.lag_seconds);
    if (wk.has_level) {
        bsd_prom_scalar(&b, "birdsong_sound_rms_dbfs", "gauge", "RMS level of the latest window, dBFS", (double)wk.level.rms_dbfs);
        bsd_prom_scalar(&b, "birdsong_sound_peak_dbfs", "gauge", "Peak level of the latest window, dBFS", (double)wk.level.peak_dbfs);
    }
    bsd_prom_scalar(&b, "birdsong_sound_silent_seconds", "gauge",
                   "Seconds the input has been digital silence without a break (0: not silent)", wk.silent_seconds);
    bsd_prom_scalar(&b, "birdsong_sound_clipping_seconds", "gauge",
                   "Seconds the input has been clipping without a break (0: not clipping)", wk.clipping_seconds);
    if (st) {
        bsd_prom_family(&b, "birdsong_inference_seconds", "histogram",
                       "Time per window for features, normalization and network");
        bsd_prom_histogram(&b, "birdsong_inference_seconds", NULL, &st->inference);
    }
    bsd_prom_scalar(&b, "birdsong_capture_overruns_total", "counter",
                   "Times the sample ring was full when the capture wrote to it", (double)cap.overruns);
    bsd_prom_scalar(&b, "birdsong_capture_dropped_samples_total", "counter", "Samples lost because the ring was full", (double)cap.dropped_samples);
    bsd_prom_scalar(&b, "birdsong_capture_device_overflows_total", "counter", "Input overflows reported by the device", (double)cap.device_overflows);
    bsd_prom_scalar(&b, "birdsong_capture_failures_total", "counter", "Capture source failures (each is reopened)", (double)cap.failures);

    /* every source, labelled by name: each unlabelled family above that is the first source's
     * (windows, lag, sound levels, capture_*) has its twin here */
    static const struct { const char *name, *type, *help; } per_source[] = {
        {"birdsong_source_running", "gauge", "1 while the source delivers (state running), else 0"},
        {"birdsong_source_reconnects_total", "counter", "Opens of the source after the first"},
        {"birdsong_source_failures_total", "counter", "Failures of the source (each is reopened with backoff)"},
        {"birdsong_source_seconds_since_last_sample", "gauge", "Seconds since the source last delivered audio"},
        {"birdsong_source_dropped_samples_total", "counter", "Samples of the source lost because its ring was full"},
        {"birdsong_source_windows_total", "counter", "Windows of the source run through the network"},
        {"birdsong_source_lag_seconds", "gauge", "Audio of the source waiting for the worker"},
        {"birdsong_source_sound_rms_dbfs", "gauge", "RMS level of the source's latest window, dBFS"},
        {"birdsong_source_sound_peak_dbfs", "gauge", "Peak level of the source's latest window, dBFS"},
        {"birdsong_source_sound_silent_seconds", "gauge",
         "Seconds the source has been digital silence without a break (0: not silent)"},
        {"birdsong_source_sound_clipping_seconds", "gauge",
         "Seconds the source has been clipping without a break (0: not clipping)"},
        {"birdsong_source_overruns_total", "counter", "Times the source's sample ring was full when it wrote to it"},
        {"birdsong_source_device_overflows_total", "counter", "Input overflows reported by the source's device"},
    };
    enum { F_RMS = 7, F_PEAK = 8 }; /* levels: only for a source that has had a window */
    bsd_capture_stats caps[BSD_MAX_SOURCES];
    bsd_worker_stats wks[BSD_MAX_SOURCES];
    for (int i = 0; i < app->n_sources; i++) {
        caps[i] = bsd_capture_get_stats(app->sources[i].capture);
        wks[i] = bsd_worker_get_stats(app->worker, i);
    }
    for (size_t f = 0; f < sizeof per_source / sizeof per_source[0]; f++) {
        bsd_prom_family(&b, per_source[f].name, per_source[f].type, per_source[f].help);
        for (int i = 0; i < app->n_sources; i++) {
            const bsd_capture_stats *s = &caps[i];
            double v[] = {s->state == BSD_CAP_RUNNING, (double)(s->opens > 0 ? s->opens - 1 : 0), (double)s->failures,
                          s->seconds_since_last_sample, (double)s->dropped_samples, (double)wks[i].windows,
                          wks[i].lag_seconds, (double)wks[i].level.rms_dbfs, (double)wks[i].level.peak_dbfs,
                          wks[i].silent_seconds, wks[i].clipping_seconds, (double)s->overruns,
                          (double)s->device_overflows};
            _Static_assert(sizeof v / sizeof v[0] == sizeof per_source / sizeof per_source[0], "one value per family");
            if ((f == F_RMS || f == F_PEAK) && !wks[i].has_level) continue;
            const char *lab[] = {"source", app->sources[i].name, NULL};
            bsd_prom_sample(&b, per_source[f].name, lab, v[f]);
        }
    }

    if (st) {
        bsd_prom_family(&b, "birdsong_detections_total", "counter", "Detections emitted, per species");
        pthread_mutex_lock(&st->lock);
        for (int i = 0; i < st->n_counts; i++) {
            const char *lab[] = {"species", st->count_labels[i], NULL};
            bsd_prom_sample(&b, "birdsong_detections_total", lab, (double)st->counts[i]);
        }
        uint64_t det_errors = st->detector_errors, suppressed = 0;
        bsd_privacy_stats ps = {0}; /* every lane's, summed */
        uint64_t cal_blocked = st->calendar_blocked, lane_detections[BSD_MAX_SOURCES];
        for (int k = 0; k < st->n_lanes; k++) {
            const bsd_station_lane *ln = &st->lanes[k];
            lane_detections[k] = ln->detections;
            suppressed += ln->suppressed;
            ps.windows_filtered += ln->privacy_stats.windows_filtered;
            ps.detections_dropped += ln->privacy_stats.detections_dropped;
            ps.clips_withheld += ln->privacy_stats.clips_withheld;
        }
        pthread_mutex_unlock(&st->lock);
        bsd_prom_family(&b, "birdsong_source_detections_total", "counter", "Detections emitted from the source");
        for (int k = 0; k < st->n_lanes; k++) {
            const char *lab[] = {"source", st->lanes[k].name, NULL};
            bsd_prom_sample(&b, "birdsong_source_detections_total", lab, (double)lane_detections[k]);
        }
        bsd_prom_scalar(&b, "birdsong_privacy_windows_filtered_total", "counter",
                        "Windows in which the human filter class reached privacy_threshold", (double)ps.windows_filtered);
        bsd_prom_scalar(&b, "birdsong_privacy_detections_dropped_total", "counter",
                        "Detections dropped because they overlapped human voice (privacy_action = drop)",
                        (double)ps.detections_dropped);
        bsd_prom_scalar(&b, "birdsong_privacy_clips_withheld_total", "counter",
                        "Detections emitted or dropped without their audio clip because it came near human voice",
                        (double)ps.clips_withheld);
        bsd_prom_scalar(&b, "birdsong_calendar_detections_blocked_total", "counter",
                        "Detections not emitted: the species is outside its species_calendar window", (double)cal_blocked);
        bsd_prom_scalar(&b, "birdsong_detections_suppressed_total", "counter",
                       "Detections dropped by suppress_seconds (repeats of a species)", (double)suppressed);
        bsd_prom_scalar(&b, "birdsong_detector_config_errors_total", "counter",
                       "Models whose labels the detection settings did not fit (no detections then)", (double)det_errors);
        bsd_store_stats ss = {0};
        if (st->store) ss = bsd_store_get_stats(st->store);
        bsd_prom_scalar(&b, "birdsong_db_errors_total", "counter", "Failed database operations", (double)ss.errors);
        bsd_prom_scalar(&b, "birdsong_db_dropped_total", "counter", "Detections not stored: the write queue was full", (double)ss.dropped);
        bsd_prom_scalar(&b, "birdsong_db_rows_written_total", "counter", "Detections committed to the database", (double)ss.inserted);
        bsd_prom_scalar(&b, "birdsong_db_retention_deleted_total", "counter", "Detections deleted by retention", (double)ss.retention_deleted);
        bsd_prom_scalar(&b, "birdsong_db_queue_length", "gauge", "Detections waiting for the database writer", (double)ss.queue_length);
        if (st->state_dir[0]) {
            struct statvfs v;
            if (statvfs(st->state_dir, &v) == 0) {
                bsd_prom_scalar(&b, "birdsong_disk_free_bytes", "gauge", "Free bytes on the state_dir file system", (double)v.f_bavail * (double)v.f_frsize);
                bsd_prom_family(&b, "birdsong_disk_free_ratio", "gauge", "Free fraction of the state_dir file system");
                bsd_prom_sample(&b, "birdsong_disk_free_ratio", NULL,
                               v.f_blocks ? (double)v.f_bavail / (double)v.f_blocks : 0);
            }
        }
        if (st->clips) {
            bsd_clips_stats cs = bsd_clips_get_stats(st->clips);
            bsd_prom_scalar(&b, "birdsong_clips_saved_total", "counter", "Clips written", (double)cs.saved);
            bsd_prom_scalar(&b, "birdsong_clips_deleted_total", "counter", "Clips deleted by the quota", (double)cs.deleted);
            bsd_prom_scalar(&b, "birdsong_clips_skipped_total", "counter", "Clips not written (no room, or too many pending)", (double)(cs.skipped_disk + cs.skipped_busy));
            bsd_prom_scalar(&b, "birdsong_clips_bytes", "gauge", "Bytes used by clips", (double)cs.bytes);
        }
        bsd_sse_stats es = bsd_sse_get_stats(st->hub);
        bsd_prom_scalar(&b, "birdsong_stream_clients", "gauge", "Connected /api/v1/stream clients", (double)es.clients);
        bsd_prom_scalar(&b, "birdsong_stream_dropped_clients_total", "counter", "Stream clients dropped for being too slow", (double)es.dropped_slow);
        bsd_prom_scalar(&b, "birdsong_stream_rejected_clients_total", "counter", "Stream clients refused (limit reached)", (double)es.rejected);
        bsd_prom_scalar(&b, "birdsong_stream_events_too_long_total", "counter",
                       "Events not streamed: longer than a history slot", (double)es.too_long);
        if (st->mqtt) {
            bsd_mqtt_stats ms = bsd_mqtt_get_stats(st->mqtt);
            bsd_prom_scalar(&b, "birdsong_mqtt_connected", "gauge", "1 when connected to the MQTT broker", ms.connected);
            bsd_prom_scalar(&b, "birdsong_mqtt_published_total", "counter", "Messages handed to the MQTT broker (detections, and Home Assistant's with mqtt_homeassistant)", (double)ms.sent);
            bsd_prom_scalar(&b, "birdsong_mqtt_dropped_total", "counter", "Detections dropped from the full MQTT queue", (double)ms.dropped);
        }
        if (st->hooks) {
            bsd_webhook_stats hs = bsd_webhooks_get_stats(st->hooks);
            bsd_prom_scalar(&b, "birdsong_webhook_delivered_total", "counter", "Webhook POSTs answered 2xx (one per detection and URL)", (double)hs.delivered);
            bsd_prom_scalar(&b, "birdsong_webhook_retries_total", "counter", "Webhook POSTs retried after a failure", (double)hs.retries);
            bsd_prom_scalar(&b, "birdsong_webhook_failed_total", "counter", "Webhook payloads given up after webhook_retries", (double)hs.failed);
            bsd_prom_scalar(&b, "birdsong_webhook_dropped_total", "counter", "Webhook payloads dropped: the queue was full", (double)hs.dropped);
            bsd_prom_scalar(&b, "birdsong_webhook_queue_length", "gauge", "Webhook payloads waiting, every URL", (double)hs.queue_length);
        }
    }
    bsd_worker_model_info_clear(&model);
    if (b.failed) {
        bsd_prom_buf_free(&b);
        return bsd_http_error(c, 500, url, "out of memory building the metrics page");
    }
    /* the buffer is handed over to libmicrohttpd */
    return bsd_http_reply_text(c, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len, MHD_RESPMEM_MUST_FREE);
}
