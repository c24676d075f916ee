// The SVG charts of bench sweeps: every point drawn, tick labels readable where panels meet.
#include "trace/svg_plot.h"

#include <gtest/gtest.h>

using namespace forkjoin::trace;

TEST(SvgPlot, DrawsEverySeriesAndKeepsTickLabelsInsideTheirPanel) {
    Panel tokens{"total tokens", "tokens", true, {{"sequential", {264, 1089}, {0.5, 0.7}}, {"native", {464, 3191}, {0.6, 0.8}}}};
    Panel context{"context", "window", false, {{"sequential", {512, 4096}, {0.1, 0.6}}, {"native", {512, 4096}, {0.5, 0.7}}}};
    const std::string svg = svg_line_panels({tokens, context}, "accuracy", 0, 1);
    EXPECT_EQ(svg.rfind("<svg", 0), 0u);
    size_t circles = 0;
    for (size_t at = svg.find("<circle"); at != std::string::npos; at = svg.find("<circle", at + 1)) ++circles;
    EXPECT_EQ(circles, 8u);
    // Numbers from 100 up are whole, never "1.09e+03" (too wide for the gap between panels, and a
    // coordinate printed so is off by pixels).
    EXPECT_EQ(svg.find("e+0"), std::string::npos);
    EXPECT_NE(svg.find(">4096</text>"), std::string::npos);
    // The last tick of a panel ends at its right edge, the first starts at its left edge.
    EXPECT_NE(svg.find("text-anchor=\"end\">4096<"), std::string::npos);
    EXPECT_NE(svg.find("text-anchor=\"start\">512<"), std::string::npos);
}
