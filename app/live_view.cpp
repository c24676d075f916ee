#include "app/live_view.h"

#include <unistd.h>

namespace forkjoin::app {

LiveView::Mode LiveView::mode_for(std::FILE * out, bool json) {
    if (json) return Mode::quiet;
    return isatty(fileno(out)) ? Mode::terminal : Mode::lines;
}

void LiveView::line(const std::string & text) {
    std::fprintf(out_, "%s\n", text.c_str());
    std::fflush(out_);
}

void LiveView::on_event(const runtime::JobEvent & e) {
    if (mode_ == Mode::quiet || e.done) return;
    std::lock_guard<std::mutex> lock(mu_);
    const runtime::Event & ev = e.event;
    Row & row = rows_[ev.thread];
    const std::string name = "thread " + std::to_string(ev.thread) + (row.label.empty() && ev.label.empty() ? "" : " [" + (ev.label.empty() ? row.label : ev.label) + "]");
    switch (ev.kind) {
        case runtime::EventKind::thread_queued:
            row.parent = ev.parent;
            row.label = ev.label;
            row.depth = ev.parent >= 0 && rows_.count(ev.parent) ? rows_[ev.parent].depth + 1 : 0;
            break;
        case runtime::EventKind::thread_started:
            row.state = "running";
            if (mode_ == Mode::lines) line(name + " started" + (ev.parent >= 0 ? " (child of " + std::to_string(ev.parent) + ")" : ""));
            break;
        case runtime::EventKind::thread_preempted:
            row.state = "preempted";
            if (mode_ == Mode::lines) line(name + " preempted (" + ev.text + "): it resumes when the cache has room");
            break;
        case runtime::EventKind::text:
            ++row.tokens;
            break;
        case runtime::EventKind::spawned: {
            row.state = "waiting";
            std::string kids;
            for (int c : ev.children) kids += (kids.empty() ? "" : ", ") + std::to_string(c);
            if (mode_ == Mode::lines) line(name + " spawned " + std::to_string(ev.children.size()) + " children: " + (kids.empty() ? "none (refused)" : kids));
            break;
        }
        case runtime::EventKind::joined:
            row.state = "running";
            if (mode_ == Mode::lines) line(name + " joined its children");
            break;
        case runtime::EventKind::thread_ended:
            row.state = runtime::thread_state_name(ev.state);
            if (mode_ == Mode::lines) {
                line(name + " " + row.state + " after " + std::to_string(row.tokens) + " tokens" + (ev.text.empty() ? "" : ": " + ev.text));
            }
            break;
        case runtime::EventKind::finished:
            break;
    }
    if (mode_ == Mode::terminal) redraw(ev.kind != runtime::EventKind::text);
}

void LiveView::redraw(bool force) {
    const auto now = std::chrono::steady_clock::now();
    if (!force && now - last_draw_ < std::chrono::milliseconds(50)) return;
    last_draw_ = now;
    std::string frame;
    if (drawn_ > 0) frame += "\x1b[" + std::to_string(drawn_) + "F";  // back to the first line drawn
    for (const auto & [id, r] : rows_) {
        char buf[256];
        std::snprintf(buf, sizeof buf, "%*s%-3d %-9s %6lld tokens  %s", 2 * r.depth, "", id, r.state.c_str(),
                      static_cast<long long>(r.tokens), r.label.c_str());
        frame += std::string(buf) + "\x1b[K\n";
    }
    drawn_ = static_cast<int>(rows_.size());
    std::fputs(frame.c_str(), out_);
    std::fflush(out_);
}

}  // namespace forkjoin::app
