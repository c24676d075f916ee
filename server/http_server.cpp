#include "server/http_server.h"

#include "base/error.h"
#include "strategies/countdown.h"
#include "strategies/text.h"

#include <httplib.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <string_view>
#include <thread>

namespace forkjoin::server {

using nlohmann::json;

namespace {
using Clock = std::chrono::steady_clock;
// SSE lines written as they are: their lengths come from the literals (a hand-counted 15 once sent the
// keep-alive's terminating NUL, which made SSE parsers drop the next chunk as an unknown field).
constexpr std::string_view kKeepAlive = ": keep-alive\n\n";  // an SSE comment: clients skip it
constexpr std::string_view kDone = "data: [DONE]\n\n";

bool write(httplib::DataSink & sink, std::string_view bytes) { return sink.write(bytes.data(), bytes.size()); }

int64_t unix_now() {
    return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

void send_error(httplib::Response & res, int status, const std::string & message, const std::string & type, const std::string & param = "") {
    res.status = status;
    res.set_content(error_body(message, type, param).dump(), "application/json");
}

const char * error_type(int status) {
    switch (status) {
        case 401: return "authentication_error";
        case 404: return "not_found_error";
        case 413: return "invalid_request_error";
        case 503: return "server_overloaded";
        default: return status >= 500 ? "server_error" : "invalid_request_error";
    }
}
}  // namespace

// One request's view of its job, shared by the engine's sink (loop thread) and the HTTP thread.
struct Server::Exchange {
    std::mutex mu;
    std::condition_variable cv;
    std::string all;           // the answering thread's text so far (generated pieces and join insertions)
    size_t sent = 0;           // bytes of `all` already streamed
    json events = json::array();  // tree events not yet streamed
    bool stopped = false;      // a stop string showed up
    bool done = false;
    std::shared_ptr<const runtime::JobResult> result;
    runtime::JobId job = 0;
};

Server::Server(runtime::Engine & engine, ServerOptions options)
    : engine_(engine), options_(std::move(options)), http_(std::make_unique<httplib::Server>()) {
    if (options_.heartbeat_ms <= 0) throw Error(ErrorCode::invalid_argument, "heartbeat_ms must be > 0, got " + std::to_string(options_.heartbeat_ms));
    const int threads = options_.http_threads > 0 ? options_.http_threads : 64 + 8;
    http_->new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
    http_->set_payload_max_length(options_.max_body_bytes);
    // An idle keep-alive connection holds an HTTP thread, and stop() waits for it to time out: 1 s
    // (httplib's default is 5) bounds both; a client that comes back later just reconnects.
    http_->set_keep_alive_timeout(1);
    http_->set_pre_routing_handler([this](const httplib::Request & req, httplib::Response & res) {
        if (options_.api_key.empty() || req.path == "/health") return httplib::Server::HandlerResponse::Unhandled;
        if (req.get_header_value("Authorization") == "Bearer " + options_.api_key) return httplib::Server::HandlerResponse::Unhandled;
        send_error(res, 401, req.has_header("Authorization") ? "Incorrect API key provided" : "Missing API key: send Authorization: Bearer <key>",
                   "authentication_error");
        return httplib::Server::HandlerResponse::Handled;
    });
    http_->set_error_handler([](const httplib::Request & req, httplib::Response & res) {
        if (!res.body.empty()) return;
        const std::string message = res.status == 404   ? "no route " + req.method + " " + req.path
                                    : res.status == 413 ? "the request body is larger than this server accepts"
                                                        : "HTTP " + std::to_string(res.status);
        res.set_content(error_body(message, error_type(res.status)).dump(), "application/json");
    });
    http_->set_exception_handler([](const httplib::Request &, httplib::Response & res, std::exception_ptr ep) {
        std::string what = "internal error";
        try {
            std::rethrow_exception(ep);
        } catch (const std::exception & e) {
            what = e.what();
        } catch (...) {
        }
        send_error(res, 500, what, "server_error");
    });
    http_->set_logger([this](const httplib::Request &, const httplib::Response & res) {
        std::lock_guard<std::mutex> lock(counters_mu_);
        ++responses_[std::to_string(res.status)];
    });
    http_->Post("/v1/completions", [this](const httplib::Request & q, httplib::Response & r) { handle_completion(q, r, false); });
    http_->Post("/v1/chat/completions", [this](const httplib::Request & q, httplib::Response & r) { handle_completion(q, r, true); });
    http_->Get("/v1/models", [this](const httplib::Request &, httplib::Response & r) {
        json model = {{"id", options_.model_id}, {"object", "model"}, {"created", unix_now()}, {"owned_by", "forkjoin"}};
        r.set_content(json{{"object", "list"}, {"data", json::array({model})}}.dump(), "application/json");
    });
    http_->Get("/health", [](const httplib::Request &, httplib::Response & r) { r.set_content(R"({"status":"ok"})", "application/json"); });
    http_->Get("/metrics", [this](const httplib::Request &, httplib::Response & r) { handle_metrics(r); });
}

Server::~Server() { stop(); }

int Server::bind() {
    port_ = options_.port == 0 ? http_->bind_to_any_port(options_.host) : (http_->bind_to_port(options_.host, options_.port) ? options_.port : -1);
    if (port_ < 0) throw Error(ErrorCode::io, "cannot listen on " + options_.host + ":" + std::to_string(options_.port));
    return port_;
}

void Server::serve() { http_->listen_after_bind(); }

void Server::stop() {
    if (http_) http_->stop();
}

void Server::shutdown(double deadline_s) {
    draining_ = true;
    const auto start = std::chrono::steady_clock::now();
    auto waited = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
    while (engine_.jobs_in_flight() > 0 && waited() < deadline_s) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    const int left = engine_.jobs_in_flight();
    if (left > 0) {
        // Past the deadline: the rest end now, with what they have (finish_reason "cancelled").
        engine_.cancel_all("the server is shutting down");
        while (engine_.jobs_in_flight() > 0 && waited() < deadline_s + 5) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    log_line("shutting down after " + std::to_string(waited()).substr(0, 5) + " s (" + std::to_string(left) +
             " requests cancelled at the deadline)");
    stop();
}

std::shared_ptr<runtime::Program> Server::make_program(const ApiRequest & req) const {
    Sampling sampling;
    sampling.temperature = req.temperature;
    sampling.top_p = req.top_p;
    sampling.seed = req.seed;
    if (req.task == "countdown") {
        strategies::CountdownOptions o;
        o.strategy = strategies::parse_countdown_strategy(req.strategy);
        o.style = options_.countdown_style;
        o.limits = req.limits;
        o.sampling = sampling;
        o.samples = req.samples;
        o.controller = req.controller;
        o.policies = options_.policies;
        return std::make_shared<strategies::CountdownProgram>(*req.problem, o);
    }
    strategies::TextOptions o;
    o.strategy = req.strategy;
    o.dialect = req.dialect;
    o.limits = req.limits;
    o.sampling = sampling;
    o.samples = req.samples;
    o.max_items = req.max_items;
    o.controller = req.controller;
    o.policies = options_.policies;
    return std::make_shared<strategies::TextProgram>(req.prompt, o);
}

void Server::log_request(const std::string & id, const ApiRequest & req, const runtime::JobResult * r, const std::string & outcome) {
    char line[512];
    std::snprintf(line, sizeof line, "%s task=%s strategy=%s threads=%zu tokens=%lld wall=%.3fs user=%s outcome=%s", id.c_str(),
                  req.task.c_str(), req.strategy.c_str(), r ? r->threads.size() : size_t{0},
                  static_cast<long long>(r ? r->metrics.total_tokens : 0), r ? r->metrics.wall_s : 0.0,
                  req.user.empty() ? "-" : req.user.c_str(), outcome.c_str());
    log_line(line);
}

void Server::log_line(const std::string & line) {
    if (options_.log) {
        options_.log(line);
    } else {
        std::fprintf(stderr, "forkjoin serve: %s\n", line.c_str());
    }
}

void Server::handle_completion(const httplib::Request & http, httplib::Response & res, bool chat) {
    if (draining_) {  // shutting down: in-flight requests finish, new ones go elsewhere
        res.set_header("Retry-After", "1");
        res.set_header("Connection", "close");
        send_error(res, 503, "the server is shutting down", "server_overloaded");
        return;
    }
    ApiRequest req;
    try {
        req = parse_request(http.body, chat, options_.defaults);
    } catch (const ApiError & e) {
        send_error(res, e.status, e.what(), e.type, e.param);
        req.chat = chat;
        log_request((chat ? "chatcmpl-" : "cmpl-") + std::to_string(next_id_++), req, nullptr,
                    std::to_string(e.status) + " " + (e.param.empty() ? "body" : e.param));
        return;
    }
    std::shared_ptr<runtime::Program> program;
    try {
        program = make_program(req);
    } catch (const Error & e) {
        send_error(res, 400, e.what(), "invalid_request_error", "forkjoin");
        return;
    }
    const std::string id = (chat ? "chatcmpl-" : "cmpl-") + std::to_string(next_id_++);
    const std::string model = options_.model_id;
    const int64_t created = unix_now();
    auto ex = std::make_shared<Exchange>();
    runtime::JobOptions jo;
    jo.timeout_s = req.timeout_s;
    const std::vector<std::string> stop = req.stop;
    size_t longest_stop = 0;
    for (const auto & s : stop) longest_stop = std::max(longest_stop, s.size());
    const bool stream = req.stream;
    runtime::Engine * engine = &engine_;
    jo.events = [ex, stop, longest_stop, stream, engine](const runtime::JobEvent & e) {
        std::lock_guard<std::mutex> lock(ex->mu);
        if (e.done) {
            ex->done = true;
            ex->result = e.result;
        } else {
            const runtime::Event & ev = e.event;
            if (e.answering && !ex->stopped && (ev.kind == runtime::EventKind::text || ev.kind == runtime::EventKind::joined)) {
                ex->all += ev.text;
                if (!stop.empty()) {
                    // Only the tail can hold a stop string that was not there before this piece.
                    const size_t from = ex->all.size() > ev.text.size() + longest_stop ? ex->all.size() - ev.text.size() - longest_stop : 0;
                    std::string tail = ex->all.substr(from);
                    if (cut_at_stop(tail, stop)) {
                        ex->stopped = true;
                        engine->cancel(e.job, "stop");  // only queues: safe from the loop thread
                    }
                }
            }
            if (stream && (ev.kind == runtime::EventKind::spawned || ev.kind == runtime::EventKind::joined ||
                           ev.kind == runtime::EventKind::thread_ended)) {
                json j = {{"type", runtime::event_kind_name(ev.kind)}, {"thread", ev.thread}, {"t_s", ev.t_s}};
                if (ev.parent >= 0) j["parent"] = ev.parent;
                if (!ev.children.empty()) j["children"] = ev.children;
                if (ev.kind == runtime::EventKind::thread_ended) {
                    j["state"] = runtime::thread_state_name(ev.state);
                    if (!ev.text.empty()) j["reason"] = ev.text;
                    if (!ev.label.empty()) j["label"] = ev.label;
                }
                ex->events.push_back(std::move(j));
            }
        }
        // A non-streaming answer waits for the end only: waking its HTTP thread per token would take
        // the cores the decode needs.
        if (stream || e.done) ex->cv.notify_all();
    };
    try {
        ex->job = engine_.submit(program, jo);
    } catch (const Error & e) {
        if (e.code() != ErrorCode::overloaded) throw;
        res.set_header("Retry-After", "1");
        send_error(res, 503, e.what(), "server_overloaded");
        log_request(id, req, nullptr, "503 overloaded");
        return;
    }

    // What the client finally reads: the stop-cut text, or the job's answer text.
    auto final_text = [ex, stop](std::string & finish) {
        if (ex->stopped) {
            std::string t = ex->all;
            cut_at_stop(t, stop);
            finish = "stop";
            return t;
        }
        finish = ex->result->finish_reason;
        std::string t = ex->result->text;
        if (!stop.empty() && cut_at_stop(t, stop)) finish = "stop";
        return t;
    };
    auto released = [this, ex, id, req](bool success) {
        bool done;
        {
            std::lock_guard<std::mutex> lock(ex->mu);
            done = ex->done;
        }
        if (!success && !done) {
            ++disconnects_;
            engine_.cancel(ex->job, "client disconnected");
            log_request(id, req, nullptr, "client disconnected");
        }
    };

    const auto heartbeat = std::chrono::milliseconds(options_.heartbeat_ms);
    if (!req.stream) {
        res.set_chunked_content_provider(
            "application/json",
            [this, ex, req, id, model, created, final_text, heartbeat](size_t, httplib::DataSink & sink) {
                std::unique_lock<std::mutex> lock(ex->mu);
                ex->cv.wait_for(lock, heartbeat, [&] { return ex->done; });
                if (!ex->done) {
                    lock.unlock();
                    // Leading whitespace is valid JSON: it keeps the connection honest, and a write to a
                    // client that went away fails, which cancels the job.
                    return write(sink, " ");
                }
                std::string finish;
                const std::string text = final_text(finish);
                const std::string body = completion_body(req, *ex->result, id, model, created, text, finish).dump();
                log_request(id, req, ex->result.get(), finish);
                lock.unlock();
                if (!write(sink, body)) return false;
                sink.done();
                return true;
            },
            released);
        return;
    }

    ++streams_open_;
    struct StreamState {
        bool role_sent = false;
        Clock::time_point last_write = Clock::now();
    };
    auto st = std::make_shared<StreamState>();
    const size_t holdback = longest_stop > 0 ? longest_stop - 1 : 0;
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider(
        "text/event-stream",
        [this, ex, st, req, id, model, created, final_text, holdback, stop, heartbeat](size_t, httplib::DataSink & sink) {
            auto send = [&](const json & j) {
                st->last_write = Clock::now();
                return write(sink, "data: " + j.dump() + "\n\n");
            };
            std::unique_lock<std::mutex> lock(ex->mu);
            ex->cv.wait_for(lock, heartbeat, [&] { return ex->done || ex->all.size() > ex->sent + holdback || !ex->events.empty(); });
            // New text (holding back what could still turn out to be the start of a stop string).
            std::string content;
            if (!ex->stopped) {
                const size_t ready = ex->done ? ex->all.size() : (ex->all.size() > holdback ? ex->all.size() - holdback : 0);
                if (ready > ex->sent) {
                    content = ex->all.substr(ex->sent, ready - ex->sent);
                    ex->sent = ready;
                }
            } else {
                std::string cut = ex->all;
                cut_at_stop(cut, stop);
                if (cut.size() > ex->sent) content = cut.substr(ex->sent);
                ex->sent = std::max(ex->sent, cut.size());
            }
            json events = std::move(ex->events);
            ex->events = json::array();
            const bool done = ex->done;
            std::shared_ptr<const runtime::JobResult> result = ex->result;
            lock.unlock();

            bool ok = true;
            if (req.chat && !st->role_sent) {
                ok &= send(chunk_body(req, id, model, created, std::string(), std::nullopt, nullptr, true));
                st->role_sent = true;
            }
            if (!content.empty() || !events.empty()) {
                json ext = events.empty() ? json(nullptr) : json{{"events", events}};
                ok &= send(chunk_body(req, id, model, created, content.empty() ? std::nullopt : std::optional<std::string>(content),
                                      std::nullopt, ext));
            }
            if (!ok) return false;
            if (!done) {
                if (Clock::now() - st->last_write >= heartbeat) {
                    // A client that went away makes it fail.
                    st->last_write = Clock::now();
                    return write(sink, kKeepAlive);
                }
                return true;
            }
            std::string finish;
            {
                std::lock_guard<std::mutex> relock(ex->mu);
                final_text(finish);
            }
            ok &= send(chunk_body(req, id, model, created, std::nullopt, finish, forkjoin_body(req, *result)));
            if (req.include_usage) {
                json usage = {{"id", id}, {"object", req.chat ? "chat.completion.chunk" : "text_completion"}, {"created", created},
                              {"model", model}, {"choices", json::array()}, {"usage", usage_body(*result)}};
                ok &= send(usage);
            }
            ok &= write(sink, kDone);
            log_request(id, req, result.get(), finish);
            if (!ok) return false;
            sink.done();
            return true;
        },
        [this, released](bool success) {
            --streams_open_;
            released(success);
        });
}

void Server::handle_metrics(httplib::Response & res) {
    const runtime::EngineStats s = engine_.stats();
    std::string out;
    auto metric = [&](const char * name, const char * type, const char * help, double value, const std::string & labels = "") {
        if (labels.empty() || out.find(std::string("# TYPE ") + name + " ") == std::string::npos) {
            out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
        }
        char v[64];
        std::snprintf(v, sizeof v, "%.17g", value);
        out += std::string(name) + (labels.empty() ? "" : "{" + labels + "}") + " " + v + "\n";
    };
    metric("forkjoin_requests_running", "gauge", "Requests (jobs) in flight.", s.jobs_running);
    metric("forkjoin_requests_queued", "gauge", "Requests in flight none of whose threads has started.", s.runtime.requests_queued);
    metric("forkjoin_threads_running", "gauge", "Threads holding a sequence and decoding.", s.runtime.threads_running);
    metric("forkjoin_threads_waiting", "gauge", "Parents waiting on their children.", s.runtime.threads_waiting);
    metric("forkjoin_threads_queued", "gauge", "Threads waiting for admission.", s.runtime.threads_queued);
    metric("forkjoin_streams_open", "gauge", "Streaming responses open.", static_cast<double>(streams_open_.load()));
    metric("forkjoin_kv_cells_used", "gauge", "KV cells in use.", s.kv.cells_used);
    metric("forkjoin_kv_cells_total", "gauge", "KV cells in the cache.", s.kv.cells_total);
    metric("forkjoin_sequences_live", "gauge", "Backend sequences live.", s.kv.live_sequences);
    metric("forkjoin_tokens_decoded_total", "counter", "Tokens decoded.", static_cast<double>(s.runtime.decoded_tokens));
    metric("forkjoin_decode_steps_total", "counter", "Decode steps.", static_cast<double>(s.runtime.decode_steps));
    metric("forkjoin_mean_batch", "gauge", "Tokens per decode step since start.",
           s.runtime.decode_steps ? static_cast<double>(s.runtime.decoded_tokens) / static_cast<double>(s.runtime.decode_steps) : 0.0);
    metric("forkjoin_requests_finished_total", "counter", "Requests that ended (any outcome).", static_cast<double>(s.jobs_finished));
    metric("forkjoin_errors_total", "counter", "Errors by kind.", static_cast<double>(s.jobs_failed - s.jobs_cancelled - s.jobs_timed_out), "kind=\"no_answer\"");
    metric("forkjoin_errors_total", "counter", "Errors by kind.", static_cast<double>(s.jobs_cancelled), "kind=\"cancelled\"");
    metric("forkjoin_errors_total", "counter", "Errors by kind.", static_cast<double>(s.jobs_timed_out), "kind=\"timeout\"");
    metric("forkjoin_errors_total", "counter", "Errors by kind.", static_cast<double>(s.program_errors), "kind=\"program\"");
    metric("forkjoin_errors_total", "counter", "Errors by kind.", static_cast<double>(s.thread_failures), "kind=\"thread_failed\"");
    metric("forkjoin_errors_total", "counter", "Errors by kind.", static_cast<double>(s.runtime.failed_steps), "kind=\"decode_step\"");
    metric("forkjoin_errors_total", "counter", "Errors by kind.", static_cast<double>(disconnects_.load()), "kind=\"client_disconnected\"");
    {
        std::lock_guard<std::mutex> lock(counters_mu_);
        for (const auto & [status, n] : responses_) {
            metric("forkjoin_http_responses_total", "counter", "HTTP responses by status.", static_cast<double>(n), "status=\"" + status + "\"");
        }
    }
    res.set_content(out, "text/plain; version=0.0.4");
}

}  // namespace forkjoin::server
