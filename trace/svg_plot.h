// Small line charts as standalone SVG (no dependencies): a row of panels sharing a y axis, one
// polyline per series. Used for accuracy-versus-budget curves.
#pragma once

#include <string>
#include <vector>

namespace forkjoin::trace {

struct Series {
    std::string name;
    std::vector<double> x, y;
};

struct Panel {
    std::string title;
    std::string x_label;
    bool log_x = false;
    std::vector<Series> series;
};

// y is shared by all panels (e.g. accuracy 0..1). Returns the SVG document.
std::string svg_line_panels(const std::vector<Panel> & panels, const std::string & y_label, double y_min, double y_max);

}  // namespace forkjoin::trace
