#include "trace/svg_plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace forkjoin::trace {
namespace {

const char * kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"};

// Coordinates and labels: whole numbers from 100 up (a pixel is enough, and "1.09e+03" is both
// imprecise and too wide for a tick label), two decimals below, %g only for tiny values.
std::string num(double v) {
    char buf[32];
    if (std::fabs(v) >= 100) std::snprintf(buf, sizeof buf, "%.0f", v);
    else if (v != 0 && std::fabs(v) < 0.01) std::snprintf(buf, sizeof buf, "%.3g", v);
    else std::snprintf(buf, sizeof buf, "%.2f", v);
    std::string s = buf;
    if (s.find('.') != std::string::npos && s.find('e') == std::string::npos) {
        while (s.back() == '0') s.pop_back();
        if (s.back() == '.') s.pop_back();
    }
    return s;
}

std::string escape(const std::string & s) {
    std::string out;
    for (char c : s) {
        if (c == '<') out += "&lt;";
        else if (c == '>') out += "&gt;";
        else if (c == '&') out += "&amp;";
        else out += c;
    }
    return out;
}

}  // namespace

std::string svg_line_panels(const std::vector<Panel> & panels, const std::string & y_label, double y_min, double y_max) {
    const double pw = 320, ph = 240, ml = 60, mt = 40, gap = 40, mb = 50;
    const double width = ml + static_cast<double>(panels.size()) * (pw + gap) + 140;
    const double height = mt + ph + mb;
    std::string s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + num(width) + "\" height=\"" + num(height) +
                    "\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
    for (size_t p = 0; p < panels.size(); ++p) {
        const Panel & panel = panels[p];
        const double x0 = ml + static_cast<double>(p) * (pw + gap), y0 = mt;
        double lo = 1e300, hi = -1e300;
        for (const auto & ser : panel.series) {
            for (double v : ser.x) {
                const double t = panel.log_x ? std::log10(std::max(v, 1e-9)) : v;
                lo = std::min(lo, t);
                hi = std::max(hi, t);
            }
        }
        if (!(hi > lo)) {
            lo -= 1;
            hi += 1;
        }
        auto px = [&](double v) { return x0 + ((panel.log_x ? std::log10(std::max(v, 1e-9)) : v) - lo) / (hi - lo) * pw; };
        auto py = [&](double v) { return y0 + ph - (v - y_min) / (y_max - y_min) * ph; };
        s += "<rect x=\"" + num(x0) + "\" y=\"" + num(y0) + "\" width=\"" + num(pw) + "\" height=\"" + num(ph) +
             "\" fill=\"none\" stroke=\"#444\"/>\n";
        s += "<text x=\"" + num(x0 + pw / 2) + "\" y=\"" + num(y0 - 12) + "\" text-anchor=\"middle\" font-weight=\"bold\">" +
             escape(panel.title) + "</text>\n";
        s += "<text x=\"" + num(x0 + pw / 2) + "\" y=\"" + num(y0 + ph + 38) + "\" text-anchor=\"middle\">" +
             escape(panel.x_label) + (panel.log_x ? " (log)" : "") + "</text>\n";
        for (int k = 0; k <= 4; ++k) {
            const double yv = y_min + (y_max - y_min) * k / 4.0;
            s += "<line x1=\"" + num(x0) + "\" x2=\"" + num(x0 + pw) + "\" y1=\"" + num(py(yv)) + "\" y2=\"" + num(py(yv)) +
                 "\" stroke=\"#ddd\"/>\n";
            if (p == 0) {
                s += "<text x=\"" + num(x0 - 6) + "\" y=\"" + num(py(yv) + 4) + "\" text-anchor=\"end\">" + num(yv) + "</text>\n";
            }
            const double xt = lo + (hi - lo) * k / 4.0;
            const double xv = panel.log_x ? std::pow(10.0, xt) : xt;
            // The end ticks anchor inward so the last label of a panel never runs into the first of the next.
            const char * anchor = k == 0 ? "start" : k == 4 ? "end" : "middle";
            s += "<text x=\"" + num(x0 + pw * k / 4.0) + "\" y=\"" + num(y0 + ph + 16) + "\" text-anchor=\"" + anchor +
                 "\">" + num(xv) + "</text>\n";
        }
        for (size_t i = 0; i < panel.series.size(); ++i) {
            const Series & ser = panel.series[i];
            const char * color = kColors[i % 6];
            std::string pts;
            for (size_t k = 0; k < ser.x.size() && k < ser.y.size(); ++k) pts += num(px(ser.x[k])) + "," + num(py(ser.y[k])) + " ";
            s += "<polyline fill=\"none\" stroke=\"" + std::string(color) + "\" stroke-width=\"2\" points=\"" + pts + "\"/>\n";
            for (size_t k = 0; k < ser.x.size() && k < ser.y.size(); ++k) {
                s += "<circle cx=\"" + num(px(ser.x[k])) + "\" cy=\"" + num(py(ser.y[k])) + "\" r=\"3\" fill=\"" + color + "\"/>\n";
            }
            if (p + 1 == panels.size()) {
                const double ly = y0 + 14 + 18 * static_cast<double>(i);
                s += "<line x1=\"" + num(x0 + pw + 16) + "\" x2=\"" + num(x0 + pw + 36) + "\" y1=\"" + num(ly - 4) + "\" y2=\"" +
                     num(ly - 4) + "\" stroke=\"" + color + "\" stroke-width=\"2\"/>\n";
                s += "<text x=\"" + num(x0 + pw + 40) + "\" y=\"" + num(ly) + "\">" + escape(ser.name) + "</text>\n";
            }
        }
    }
    s += "<text transform=\"translate(16," + num(mt + ph / 2) + ") rotate(-90)\" text-anchor=\"middle\">" + escape(y_label) +
         "</text>\n</svg>\n";
    return s;
}

}  // namespace forkjoin::trace
