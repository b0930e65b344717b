/* HTML report with inline SVG. See report.h. */
#include "trainer/report.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <string.h>

void ts_html_escape(FILE *f, const char *s) {
    for (; s && *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&#39;", f); break;
        default: fputc(*s, f);
        }
    }
}

static void fig(FILE *f, double v, const char *fmt) {
    if (isfinite(v)) fprintf(f, fmt, v);
    else fputs("&ndash;", f);
}

/* Line chart of series over epochs (values may be NAN = gap). */
static void line_chart(FILE *f, const char *title, int n, const double *xs, const double *const *ys,
                       const char *const *names, const char *const *colors, int n_series) {
    const int W = 460, H = 240, L = 50, R = 10, T = 24, B = 34;
    double lo = INFINITY, hi = -INFINITY;
    for (int s = 0; s < n_series; s++)
        for (int i = 0; i < n; i++)
            if (isfinite(ys[s][i])) { lo = fmin(lo, ys[s][i]); hi = fmax(hi, ys[s][i]); }
    if (!isfinite(lo)) { lo = 0; hi = 1; }
    if (hi - lo < 1e-9) { hi = lo + 1; }
    double x0 = n ? xs[0] : 0, x1 = n ? xs[n - 1] : 1;
    if (x1 - x0 < 1e-9) x1 = x0 + 1;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" role=\"img\" aria-label=\"", W, H);
    ts_html_escape(f, title);
    fprintf(f, "\"><text x=\"%d\" y=\"16\" class=\"t\">", L);
    ts_html_escape(f, title);
    fprintf(f, "</text><rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" class=\"frame\"/>", L, T, W - L - R, H - T - B);
    for (int k = 0; k <= 4; k++) {
        double v = lo + (hi - lo) * k / 4.0;
        double y = H - B - (H - T - B) * k / 4.0;
        fprintf(f, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" class=\"grid\"/>", L, W - R, y, y);
        fprintf(f, "<text x=\"%d\" y=\"%.1f\" class=\"ax\" text-anchor=\"end\">%.3g</text>", L - 4, y + 4, v);
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" class=\"ax\">%g</text><text x=\"%d\" y=\"%d\" class=\"ax\" "
               "text-anchor=\"end\">epoch %g</text>", L, H - B + 16, x0, W - R, H - B + 16, x1);
    for (int s = 0; s < n_series; s++) {
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", colors[s]);
        for (int i = 0; i < n; i++) {
            if (!isfinite(ys[s][i])) continue;
            double x = L + (W - L - R) * (xs[i] - x0) / (x1 - x0);
            double y = H - B - (H - T - B) * (ys[s][i] - lo) / (hi - lo);
            fprintf(f, "%.1f,%.1f ", x, y);
        }
        fprintf(f, "\"/><text x=\"%d\" y=\"%d\" class=\"ax\" fill=\"%s\">", L + 8 + 110 * s, H - 4, colors[s]);
        ts_html_escape(f, names[s]);
        fputs("</text>", f);
    }
    fputs("</svg>\n", f);
}

static void training_curves(FILE *f, const char *training_json) {
    if (!training_json) return;
    json_t *j = json_loads(training_json, 0, NULL);
    json_t *h = j ? json_object_get(j, "history") : NULL;
    if (!json_is_array(h) || json_array_size(h) == 0) {
        fputs("<p>The model carries no training history.</p>\n", f);
        json_decref(j);
        return;
    }
    int n = (int)json_array_size(h);
    double *x = calloc((size_t)n, sizeof(double)), *tl = calloc((size_t)n, sizeof(double)),
           *vl = calloc((size_t)n, sizeof(double)), *va = calloc((size_t)n, sizeof(double));
    if (!x || !tl || !vl || !va) abort();
    for (int i = 0; i < n; i++) {
        json_t *e = json_array_get(h, (size_t)i);
        json_t *v;
        x[i] = json_is_integer(v = json_object_get(e, "epoch")) ? (double)json_integer_value(v) : i + 1;
        tl[i] = json_is_number(v = json_object_get(e, "train_loss")) ? json_number_value(v) : NAN;
        vl[i] = json_is_number(v = json_object_get(e, "val_loss")) ? json_number_value(v) : NAN;
        va[i] = json_is_number(v = json_object_get(e, "val_accuracy")) ? json_number_value(v) : NAN;
    }
    const double *ys[] = {tl, vl};
    const char *names[] = {"training loss", "validation loss"};
    const char *colors[] = {"#1f77b4", "#d62728"};
    line_chart(f, "Loss (BCE) per epoch", n, x, ys, names, colors, 2);
    const double *ys2[] = {va};
    const char *names2[] = {"validation accuracy"};
    const char *colors2[] = {"#2ca02c"};
    line_chart(f, "Validation window accuracy per epoch", n, x, ys2, names2, colors2, 1);
    free(x);
    free(tl);
    free(vl);
    free(va);
    json_decref(j);
}

static void confusion_svg(FILE *f, const ts_metrics *m, char *const *labels) {
    int C = m->C, cell = 44, L = 190, T = 20, W = L + C * cell + 150, H = T + C * cell + 150;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" role=\"img\" "
               "aria-label=\"confusion matrix\">", W, H);
    for (int r = 0; r < C; r++) {
        long tot = 0;
        for (int c = 0; c < C; c++) tot += m->confusion[(size_t)r * C + c];
        fprintf(f, "<text x=\"%d\" y=\"%d\" class=\"ax\" text-anchor=\"end\">", L - 6, T + r * cell + cell / 2 + 4);
        ts_html_escape(f, labels[r]);
        fputs("</text>", f);
        for (int c = 0; c < C; c++) {
            long v = m->confusion[(size_t)r * C + c];
            double frac = tot ? (double)v / tot : 0.0;
            int shade = 255 - (int)(frac * 200);
            fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"rgb(%d,%d,255)\" stroke=\"#fff\"/>",
                    L + c * cell, T + r * cell, cell, cell, shade, shade);
            fprintf(f, "<text x=\"%d\" y=\"%d\" class=\"ax\" text-anchor=\"middle\"%s>%ld</text>", L + c * cell + cell / 2,
                    T + r * cell + cell / 2 + 4, frac > 0.6 ? " fill=\"#fff\"" : "", v);
        }
    }
    for (int c = 0; c < C; c++) {
        int x = L + c * cell + cell / 2, y = T + C * cell + 8;
        fprintf(f, "<text transform=\"translate(%d,%d) rotate(45)\" class=\"ax\">", x, y);
        ts_html_escape(f, labels[c]);
        fputs("</text>", f);
    }
    fputs("</svg>\n", f);
}

static void reliability_svg(FILE *f, const ts_metrics *m) {
    const int S = 260, L = 44, T = 24, B = 34, W = L + S + 120, H = T + S + B;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" role=\"img\" "
               "aria-label=\"reliability diagram\"><text x=\"%d\" y=\"16\" class=\"t\">Reliability: fraction positive "
               "vs mean p</text>", W, H, L);
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" class=\"frame\"/>", L, T, S, S);
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" class=\"diag\"/>", L, T + S, L + S, T);
    for (int b = 0; b < TS_ECE_BINS; b++) {
        const ts_reliability_bin *bin = &m->bins[b];
        int bw = S / TS_ECE_BINS;
        if (bin->count && isfinite(bin->frac_pos)) {
            double h = bin->frac_pos * S;
            fprintf(f, "<rect x=\"%d\" y=\"%.1f\" width=\"%d\" height=\"%.1f\" class=\"bar\"><title>[%.1f, %.1f): "
                       "%ld pairs, mean p %.3f, positive %.3f</title></rect>",
                    L + b * bw + 2, T + S - h, bw - 4, h, b / 10.0, (b + 1) / 10.0, bin->count, bin->mean_prob,
                    bin->frac_pos);
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" class=\"pt\"/>", L + bin->mean_prob * S,
                    T + S - bin->frac_pos * S);
        }
    }
    for (int k = 0; k <= 2; k++)
        fprintf(f, "<text x=\"%d\" y=\"%d\" class=\"ax\" text-anchor=\"middle\">%.1f</text>"
                   "<text x=\"%d\" y=\"%d\" class=\"ax\" text-anchor=\"end\">%.1f</text>",
                L + S * k / 2, T + S + 16, k / 2.0, L - 4, T + S - S * k / 2 + 4, k / 2.0);
    fputs("</svg>\n", f);
}

/* The open-set section; caption (may be NULL) says which windows. */
static void openset_html(FILE *f, const ts_openset *o, const char *caption) {
    fputs("<h2>Open set</h2>\n<p>", f);
    if (caption) {
        ts_html_escape(f, caption);
        fputs(". ", f);
    }
    fputs("Windows with none of the species (background and filter-class recordings), per source: species with "
          "p &gt; 0.5 per window, and false detections per hour of audio at the model's thresholds "
          "(consecutive windows of one species count once, as birdsongd merges them).</p>\n"
          "<table><tr><th>source</th><th>windows</th><th>seconds</th><th>species p &gt; 0.5 per window</th>"
          "<th>false detections</th><th>per hour</th></tr>\n", f);
    for (int s = 0; s <= o->n_sources; s++) {
        const ts_openset_row *r = s < o->n_sources ? &o->rows[s] : &o->total;
        if (s < o->n_sources && r->windows == 0) continue;
        fputs("<tr><td>", f);
        ts_html_escape(f, s < o->n_sources ? o->names[s] : "all background");
        double a = ts_openset_active(r), h = ts_openset_per_hour(r);
        fprintf(f, "</td><td>%ld</td><td>%.1f</td><td>", r->windows, r->seconds);
        if (isfinite(a)) fprintf(f, "%.3f", a); else fputs("&ndash;", f);
        fprintf(f, "</td><td>%ld</td><td>", r->detections);
        if (isfinite(h)) fprintf(f, "%.1f", h); else fputs("&ndash;", f);
        fputs("</td></tr>\n", f);
    }
    fputs("</table>\n", f);
}

void ts_report_html(FILE *f, const ts_report *r) {
    const ts_metrics *m = r->metrics;
    int C = m->C;
    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>", f);
    ts_html_escape(f, r->title);
    fputs("</title>\n<style>\nbody{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}\n"
          "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}\n"
          "th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}\n"
          "svg{margin:0.5em 1em 0.5em 0;vertical-align:top}.t{font-size:13px;font-weight:600}\n"
          ".ax{font-size:11px}.frame{fill:none;stroke:#999}.grid{stroke:#eee}.diag{stroke:#999;stroke-dasharray:4 3}\n"
          ".bar{fill:#9ecae1}.pt{fill:#d62728}.kv td{text-align:left}\n</style></head><body>\n<h1>", f);
    ts_html_escape(f, r->title);
    fputs("</h1>\n<table class=\"kv\">", f);
    fputs("<tr><td>model</td><td>", f);
    ts_html_escape(f, r->model_path ? r->model_path : "");
    fputs("</td></tr><tr><td>data</td><td>", f);
    ts_html_escape(f, r->data ? r->data : "");
    fprintf(f, "</td></tr><tr><td>windows</td><td>%ld (%ld labelled, %ld background)</td></tr>", m->n_windows,
            m->n_labelled, m->n_background);
    fprintf(f, "<tr><td>labelled recordings</td><td>%ld</td></tr>", m->n_recordings);
    fputs("<tr><td>top-1 accuracy, window</td><td>", f);
    fig(f, m->window_acc, "%.4f");
    fputs("</td></tr><tr><td>top-1 accuracy, recording (mean of its windows)</td><td>", f);
    fig(f, m->recording_acc, "%.4f");
    fputs("</td></tr><tr><td>macro mAP, window</td><td>", f);
    fig(f, m->macro_map, "%.4f");
    fputs("</td></tr><tr><td>macro mAP, recording (mean of its windows)</td><td>", f);
    fig(f, m->recording_map, "%.4f");
    fputs("</td></tr><tr><td>ECE (10 bins, every window &times; species)</td><td>", f);
    fig(f, m->ece, "%.4f");
    if (isfinite(m->ece_uncalibrated)) {
        fputs("</td></tr><tr><td>ECE without the model's calibration</td><td>", f);
        fig(f, m->ece_uncalibrated, "%.4f");
    }
    fputs("</td></tr><tr><td>mean species with p &gt; 0.5 per labelled window</td><td>", f);
    fig(f, m->active_labelled, "%.3f");
    fputs("</td></tr><tr><td>mean species with p &gt; 0.5 per background window</td><td>", f);
    fig(f, m->active_background, "%.3f");
    fputs("</td></tr></table>\n", f);

    fputs("<h2>Training curves</h2>\n", f);
    if (r->training_json) training_curves(f, r->training_json);
    else fputs("<p>No training history.</p>\n", f);

    fputs("<h2>Confusion matrix</h2>\n<p>Rows: true species; columns: the species with the highest "
          "probability; windows with exactly one label.</p>\n", f);
    confusion_svg(f, m, r->labels);

    fputs("<h2>Calibration</h2>\n", f);
    reliability_svg(f, m);
    fputs("<table><tr><th>bin</th><th>pairs</th><th>mean p</th><th>fraction positive</th></tr>\n", f);
    for (int b = 0; b < TS_ECE_BINS; b++) {
        fprintf(f, "<tr><td>[%.1f, %.1f%s</td><td>%ld</td><td>", b / 10.0, (b + 1) / 10.0,
                b == TS_ECE_BINS - 1 ? "]" : ")", m->bins[b].count);
        fig(f, m->bins[b].mean_prob, "%.3f");
        fputs("</td><td>", f);
        fig(f, m->bins[b].frac_pos, "%.3f");
        fputs("</td></tr>\n", f);
    }
    fputs("</table>\n<h2>Per species</h2>\n<table><tr><th>species</th><th>threshold</th><th>precision</th>"
          "<th>recall</th><th>F1</th><th>average precision</th><th>positive windows</th></tr>\n", f);
    for (int c = 0; c < C; c++) {
        fputs("<tr><td>", f);
        ts_html_escape(f, r->labels[c]);
        fprintf(f, "</td><td>%.3f</td><td>", m->threshold[c]);
        fig(f, m->precision[c], "%.3f");
        fputs("</td><td>", f);
        fig(f, m->recall[c], "%.3f");
        fputs("</td><td>", f);
        fig(f, m->f1[c], "%.3f");
        fputs("</td><td>", f);
        fig(f, m->ap[c], "%.3f");
        fprintf(f, "</td><td>%ld</td></tr>\n", m->support[c]);
    }
    fputs("</table>\n", f);
    if (r->openset && r->openset->total.windows > 0) openset_html(f, r->openset, r->openset_caption);
    fputs("<p>Generated by birdsong.</p>\n</body></html>\n", f);
}

int ts_report_write(const char *path, const ts_report *r, bs_error *err) {
    FILE *f = fopen(path, "w");
    if (!f) return bs_error_set(err, "%s: cannot write the report: %s", path, strerror(errno));
    ts_report_html(f, r);
    if (fclose(f) != 0) return bs_error_set(err, "%s: cannot write the report: %s", path, strerror(errno));
    return 0;
}
