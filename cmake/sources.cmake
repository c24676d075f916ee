# The pure layers' sources (no llama.cpp, no HTTP library), named once for the two trees that build
# them: the project (CMakeLists.txt) and the fuzz targets (fuzz/CMakeLists.txt, clang + libFuzzer).
# A file added to a layer here is in both; the fuzz tree once hand-listed its own copy and fell out of
# step (base/comma_list.cpp), which failed CI at its fuzz stage. Paths are relative to the project root.
set(FORKJOIN_BASE_SOURCES base/error.cpp base/cpu_share.cpp base/comma_list.cpp)
set(FORKJOIN_COUNTDOWN_SOURCES
  tasks/countdown/arithmetic.cpp
  tasks/countdown/problem.cpp
  tasks/countdown/solver.cpp
  tasks/countdown/verifier.cpp
  tasks/countdown/search_trace.cpp
  tasks/countdown/prompts.cpp
  tasks/countdown/sub_problem.cpp
  tasks/countdown/re_exploration.cpp
  tasks/countdown/trace_check.cpp
  tasks/countdown/held_out.cpp)
set(FORKJOIN_DIALECT_SOURCES dialects/plain.cpp dialects/apr.cpp dialects/forked_blocks.cpp)
set(FORKJOIN_RUNTIME_SOURCES
  runtime/scheduler.cpp
  runtime/admission.cpp
  runtime/spawns_and_joins.cpp
  runtime/probes.cpp
  runtime/confidence.cpp
  runtime/controller.cpp
  runtime/policies.cpp
  runtime/calibration.cpp
  runtime/engine.cpp)
# The remote backend's parsers (the rest of it needs cpp-httplib).
set(FORKJOIN_REMOTE_PARSER_SOURCES backends/remote/sse.cpp backends/remote/completions.cpp)
