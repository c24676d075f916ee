// One HTTP exchange with a remote server: a streamed POST read as server-sent events, or a small GET.
//
// Contract: post_sse() blocks until the response ends, fails, or cancel() is called from another
// thread (which closes the socket at once, so a worker waiting for a slow server is freed too). It
// never throws for anything the server or the network does; the outcome says what happened, sorted
// by what a caller can do about it:
//   - connection: refused, reset, cut mid-stream, or silent past the read timeout (the replica is
//     suspect; re-send elsewhere);
//   - http_status: an HTTP error; retryable for 429 and 5xx (retry_after_s from Retry-After, when the
//     server gave one), not for other 4xx (the request itself is wrong);
//   - protocol: the body is not the event stream of a completion (the message says what was wrong; a
//     2xx answer with no event at all is one: a server that ignored `stream`, a proxy's page);
//   - cancelled: cancel() was called.
// URLs are "http://host:port" or "https://host:port" with an optional path prefix
// ("http://host:port/v1" is taken as the server's root; the paths here start with /v1).
// Thread-safety: one HttpStream per exchange; cancel() may be called from any thread at any time.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

namespace httplib {
class Client;
}

namespace forkjoin::remote {

struct HttpTimeouts {
    double connect_s = 5.0;
    double read_s = 60.0;  // longest silence inside a response (a stalled stream fails after this)
};

struct HttpOutcome {
    enum class Kind { ok, connection, http_status, protocol, cancelled };
    Kind kind = Kind::ok;
    int status = 0;              // the HTTP status, when one arrived
    double retry_after_s = -1;   // Retry-After of a 429/503, when given
    std::string message;         // for people: what failed, naming the URL
    bool retryable() const {
        return kind == Kind::connection || (kind == Kind::http_status && (status == 429 || status >= 500));
    }
};

// Splits "http://host:port/prefix" into the client's "http://host:port" and the path prefix ("" or
// "/prefix" without a trailing "/v1"). Throws Error(invalid_argument) for other schemes or no host.
std::pair<std::string, std::string> split_server_url(const std::string & url);

class HttpStream {
public:
    HttpStream(const std::string & url, std::string api_key, HttpTimeouts timeouts);
    ~HttpStream();

    // POSTs a JSON body to `path` and calls on_event(data) for each server-sent event of a 2xx
    // response; on_event returns false to stop reading (the outcome is then `cancelled`), or throws
    // forkjoin::Error for data it cannot use (the outcome is then `protocol` with its message).
    HttpOutcome post_sse(const std::string & path, const std::string & body,
                         const std::function<bool(std::string_view data)> & on_event);
    // GETs `path`; on ok, `body` holds the response body (at most 1 MiB).
    HttpOutcome get(const std::string & path, std::string & body);
    // May block (httplib's stop() waits for a connect in progress): call it off the runtime's loop.
    void cancel();

private:
    std::string url_, host_port_, prefix_, api_key_;
    HttpTimeouts timeouts_;
    std::mutex mu_;
    std::unique_ptr<httplib::Client> client_;
    std::atomic<bool> cancelled_{false};  // read by the response callbacks, which then stop reading
};

}  // namespace forkjoin::remote
