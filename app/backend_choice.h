// The backend a command runs on, from its --backend options: LlamaBackend in process, or
// RemoteBackend on the servers named by --url (BackendArgs in app/commands.h).
#pragma once

#include "app/commands.h"
#include "backends/llama/backend.h"
#include "backends/remote/backend.h"

#include <memory>
#include <string>

namespace forkjoin::app {

// The command's model: whole for in process, its vocabulary only for remote. Throws Error(model_load).
std::shared_ptr<const llama::Model> load_model_for(const BackendArgs & args, const std::string & model_arg);

// The backend, sized as `in_process` says: for remote, in_process.n_seq_max sequences of
// n_ctx / n_seq_max tokens each. Throws Error(invalid_argument) for a bad option and
// Error(remote_failed) naming a server that does not answer.
std::unique_ptr<Backend> make_backend(const BackendArgs & args, const std::shared_ptr<const llama::Model> & model,
                                      const llama::BackendOptions & in_process);

// What the remote backend did, for people: requests, retries, prefix-cache hits by kind, replicas.
std::string remote_report(const remote::RemoteStats & stats);

}  // namespace forkjoin::app
