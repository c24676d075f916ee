#include "backends/remote/test_servers.h"

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <chrono>
#include <csignal>
#include <fcntl.h>
#include <fstream>
#include <netinet/in.h>
#include <spawn.h>
#include <sstream>
#include <stdexcept>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

extern char ** environ;

namespace forkjoin::remote::testing {

int free_port() {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    if (fd < 0 || bind(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0) throw std::runtime_error("no free port");
    socklen_t len = sizeof a;
    getsockname(fd, reinterpret_cast<sockaddr *>(&a), &len);
    ::close(fd);
    return ntohs(a.sin_port);
}

LlamaServer::LlamaServer(const std::string & binary, const std::string & model, int slots, int context_per_slot, int cpu_threads,
                         const std::vector<std::string> & extra_args) {
    if (access(binary.c_str(), X_OK) != 0) {
        throw std::runtime_error(binary + " is missing: scripts/setup.sh builds it (llama-server from the pinned llama.cpp)");
    }
    const int port = free_port();
    url_ = "http://127.0.0.1:" + std::to_string(port);
    char tmpl[] = "/tmp/forkjoin-llama-server-XXXXXX";
    const int log_fd = mkstemp(tmpl);
    ::close(log_fd);
    log_path_ = tmpl;
    args_ = {binary, "-m", model, "--host", "127.0.0.1", "--port", std::to_string(port),
             "-np", std::to_string(slots), "-kvu", "-c", std::to_string(slots * context_per_slot),
             "-t", std::to_string(cpu_threads), "-tb", std::to_string(cpu_threads), "--no-webui",
             "--no-warmup", "-cb"};
    args_.insert(args_.end(), extra_args.begin(), extra_args.end());
    start();
}

void LlamaServer::restart() {
    kill();
    start();
}

void LlamaServer::start() {
    const int log_fd = open(log_path_.c_str(), O_WRONLY | O_APPEND);
    std::vector<char *> argv;
    for (auto & a : args_) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, log_fd, 1);
    posix_spawn_file_actions_adddup2(&fa, log_fd, 2);
    const int spawned = posix_spawn(&pid_, args_[0].c_str(), &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    ::close(log_fd);
    if (spawned != 0) {
        pid_ = -1;
        throw std::runtime_error("cannot start " + args_[0]);
    }
    httplib::Client probe(url_);
    probe.set_connection_timeout(std::chrono::milliseconds(200));
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < deadline) {
        if (auto r = probe.Get("/health"); r && r->status == 200) return;
        int status = 0;
        if (waitpid(pid_, &status, WNOHANG) == pid_) {
            pid_ = -1;
            throw std::runtime_error("llama-server exited at start:\n" + log());
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    kill();
    throw std::runtime_error("llama-server did not become healthy in 60 s:\n" + log());
}

void LlamaServer::kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
}

LlamaServer::~LlamaServer() {
    kill();
    if (!log_path_.empty()) unlink(log_path_.c_str());
}

std::string LlamaServer::log() const {
    std::ifstream in(log_path_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

FakeCompletionServer::FakeCompletionServer(Handler completions) : server_(std::make_unique<httplib::Server>()) {
    server_->Get("/v1/models", [](const httplib::Request &, httplib::Response & res) {
        res.set_content(R"({"object":"list","data":[{"id":"fake","object":"model"}]})", "application/json");
    });
    server_->Post("/v1/completions", [this, completions](const httplib::Request & req, httplib::Response & res) {
        ++served_;
        completions(req, res);
    });
    const int port = server_->bind_to_any_port("127.0.0.1");
    url_ = "http://127.0.0.1:" + std::to_string(port);
    thread_ = std::thread([this] { server_->listen_after_bind(); });
    while (!server_->is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

FakeCompletionServer::~FakeCompletionServer() {
    server_->stop();
    thread_.join();
}

std::string FakeCompletionServer::stream_of(const Vocabulary & vocab, const std::vector<Token> & tokens, const std::string & finish_reason) {
    std::string out;
    for (Token t : tokens) {
        nlohmann::json chunk = {{"choices", {{{"text", vocab.piece(t)}, {"index", 0},
                                               {"logprobs", {{"content", {{{"id", t}, {"token", vocab.piece(t)}, {"logprob", -0.1}}}}}},
                                               {"finish_reason", nullptr}}}}};
        out += "data: " + chunk.dump() + "\n\n";
    }
    nlohmann::json last = {{"choices", {{{"text", ""}, {"index", 0}, {"logprobs", nullptr}, {"finish_reason", finish_reason}}}},
                           {"usage", {{"prompt_tokens", 1}, {"completion_tokens", tokens.size()}}}};
    out += "data: " + last.dump() + "\n\ndata: [DONE]\n\n";
    return out;
}

}  // namespace forkjoin::remote::testing
