#include "backends/remote/http_stream.h"

#include "backends/remote/sse.h"
#include "base/error.h"

#include <httplib.h>

#include <cmath>

namespace forkjoin::remote {

std::pair<std::string, std::string> split_server_url(const std::string & url) {
    // Debian's cpp-httplib is built with OpenSSL: https:// URLs get a TLS client (system CA store).
    const std::string scheme = url.rfind("https://", 0) == 0 ? "https://" : "http://";
    if (url.rfind(scheme, 0) != 0) throw Error(ErrorCode::invalid_argument, "remote URL '" + url + "': expected http://host:port or https://host:port");
    const size_t slash = url.find('/', scheme.size());
    std::string host_port = url.substr(0, slash);
    std::string prefix = slash == std::string::npos ? "" : url.substr(slash);
    while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
    if (prefix.size() >= 3 && prefix.compare(prefix.size() - 3, 3, "/v1") == 0) prefix.resize(prefix.size() - 3);
    if (host_port.size() <= scheme.size()) throw Error(ErrorCode::invalid_argument, "remote URL '" + url + "': no host");
    return {host_port, prefix};
}

HttpStream::HttpStream(const std::string & url, std::string api_key, HttpTimeouts timeouts)
    : url_(url), api_key_(std::move(api_key)), timeouts_(timeouts) {
    std::tie(host_port_, prefix_) = split_server_url(url);
}

HttpStream::~HttpStream() = default;

void HttpStream::cancel() {
    cancelled_ = true;  // the callbacks stop at their next call
    std::lock_guard lock(mu_);
    if (client_) client_->stop();  // shuts the socket: a read blocked on a slow server returns now
}

namespace {

template <typename Seconds>
auto as_duration(Seconds s) {
    return std::chrono::microseconds(static_cast<int64_t>(std::llround(s * 1e6)));
}

double parse_retry_after(const std::string & v) {
    if (v.empty()) return -1;
    try {
        size_t used = 0;
        const double s = std::stod(v, &used);
        return used == v.size() && s >= 0 ? s : -1;
    } catch (const std::exception &) {
        return -1;  // an HTTP date: not worth parsing here, the caller's backoff applies
    }
}

std::string error_body_text(const std::string & body) {
    std::string s = body.substr(0, 300);
    for (char & c : s) {
        if (c == '\n' || c == '\r') c = ' ';
    }
    return s;
}

}  // namespace

HttpOutcome HttpStream::post_sse(const std::string & path, const std::string & body,
                                 const std::function<bool(std::string_view data)> & on_event) {
    HttpOutcome out;
    {
        std::lock_guard lock(mu_);
        if (cancelled_) {
            out.kind = HttpOutcome::Kind::cancelled;
            return out;
        }
        client_ = std::make_unique<httplib::Client>(host_port_);
        client_->set_connection_timeout(as_duration(timeouts_.connect_s));
        client_->set_read_timeout(as_duration(timeouts_.read_s));
        client_->set_write_timeout(as_duration(timeouts_.read_s));
        if (!api_key_.empty()) client_->set_bearer_token_auth(api_key_);
    }
    SseReader sse;
    size_t events = 0;
    std::string error_body;
    std::string protocol_error;
    bool stopped_by_caller = false;
    int status = 0;
    httplib::Request req;
    req.method = "POST";
    req.path = prefix_ + path;
    req.headers = {{"Accept", "text/event-stream"}};
    req.set_header("Content-Type", "application/json");
    req.body = body;
    req.response_handler = [&](const httplib::Response & res) {
        status = res.status;
        if (res.status == 429 || res.status == 503) out.retry_after_s = parse_retry_after(res.get_header_value("Retry-After"));
        return !cancelled_.load();
    };
    req.content_receiver = [&](const char * data, size_t n, uint64_t, uint64_t) {
        if (cancelled_) return false;
        if (status < 200 || status >= 300) {
            if (error_body.size() < 4096) error_body.append(data, std::min<size_t>(n, 4096 - error_body.size()));
            return true;
        }
        try {
            const bool go_on = sse.feed(std::string_view(data, n), [&](std::string_view event) {
                ++events;
                return on_event(event);
            });
            if (!go_on) stopped_by_caller = true;
            return go_on;
        } catch (const std::exception & e) {
            protocol_error = e.what();
            return false;
        }
    };
    httplib::Response res;
    httplib::Error err = httplib::Error::Success;
    const bool sent = client_->send(req, res, err);
    const bool was_cancelled = cancelled_;
    out.status = status;
    if (!protocol_error.empty()) {
        out.kind = HttpOutcome::Kind::protocol;
        out.message = url_ + ": " + protocol_error;
    } else if (stopped_by_caller || was_cancelled) {
        out.kind = HttpOutcome::Kind::cancelled;
    } else if (!sent || err != httplib::Error::Success) {
        out.kind = HttpOutcome::Kind::connection;
        out.message = url_ + ": " + (status ? "connection lost mid-response (" : "") + httplib::to_string(err) + (status ? ")" : "");
    } else if (status < 200 || status >= 300) {
        out.kind = HttpOutcome::Kind::http_status;
        out.message = url_ + " answered HTTP " + std::to_string(status) + (error_body.empty() ? "" : ": " + error_body_text(error_body));
    } else if (events == 0) {
        out.kind = HttpOutcome::Kind::protocol;
        out.message = url_ + ": the answer held no server-sent event (a server that ignored stream: true, or not a completions server)";
    } else if (sse.buffered() > 0) {
        out.kind = HttpOutcome::Kind::protocol;
        out.message = url_ + ": the event stream ended inside an event";
    }
    return out;
}

HttpOutcome HttpStream::get(const std::string & path, std::string & body) {
    HttpOutcome out;
    httplib::Client client(host_port_);
    client.set_connection_timeout(as_duration(timeouts_.connect_s));
    client.set_read_timeout(as_duration(timeouts_.read_s));
    if (!api_key_.empty()) client.set_bearer_token_auth(api_key_);
    auto res = client.Get((prefix_ + path).c_str());
    if (!res) {
        out.kind = HttpOutcome::Kind::connection;
        out.message = url_ + ": " + httplib::to_string(res.error());
        return out;
    }
    out.status = res->status;
    if (res->status < 200 || res->status >= 300) {
        out.kind = HttpOutcome::Kind::http_status;
        out.retry_after_s = parse_retry_after(res->get_header_value("Retry-After"));
        out.message = url_ + prefix_ + path + " answered HTTP " + std::to_string(res->status) + ": " + error_body_text(res->body);
        return out;
    }
    body = res->body.substr(0, 1 << 20);
    return out;
}

}  // namespace forkjoin::remote
