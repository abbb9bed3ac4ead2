// Native log routing: llama.cpp's, ggml's and the server's log output, split into whole
// lines, kept in per-server tails and forwarded to one sink (the Python logger).
#pragma once

#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace llamaproc {

// Python's logging levels, so the binding can pass them through unchanged.
enum class LogLevel : int { debug = 10, info = 20, warning = 30, error = 40 };

struct LogRecord {
    LogLevel level;
    std::string line;
};

// The last lines one server (or the whole process) logged.
class LogTail {
public:
    explicit LogTail(std::size_t capacity = 200) : capacity_(capacity) {}
    void push(const std::string & line);
    std::vector<std::string> lines(std::size_t max_lines = 40) const;

private:
    mutable std::mutex mutex_;
    std::deque<std::string> lines_;
    std::size_t capacity_;
};

using LineObserver = std::function<void(const std::string & line)>;

// Lines logged on the current thread while an instance lives also go to `tail` (and to
// `observer`, which may throw to abandon the native call in progress); and a failed
// GGML_ASSERT on this thread throws NativeAbort instead of aborting the process.
class ThreadLogScope {
public:
    explicit ThreadLogScope(std::shared_ptr<LogTail> tail, LineObserver observer = nullptr);
    ~ThreadLogScope();
    ThreadLogScope(const ThreadLogScope &) = delete;
    ThreadLogScope & operator=(const ThreadLogScope &) = delete;

private:
    std::shared_ptr<LogTail> previous_;
    LineObserver previous_observer_;
};

// While it lives, native lines below ERROR logged on the current thread are demoted to DEBUG
// (a dry run that repeats a load's log lines).
class ThreadLogQuiet {
public:
    ThreadLogQuiet();
    ~ThreadLogQuiet();
    ThreadLogQuiet(const ThreadLogQuiet &) = delete;
    ThreadLogQuiet & operator=(const ThreadLogQuiet &) = delete;

private:
    bool previous_;
};

// Installs the llama/ggml log callbacks and the ggml abort callback (idempotent).
void install_native_log_hooks();

// Lines at `min_level` or above are queued for delivery (to the Python logger). Native
// threads only append to the queue: they never wait for its consumer (or the GIL). A full
// queue drops its oldest lines and counts them.
void set_log_min_level(LogLevel min_level);
// Waits up to `timeout_s` until lines are queued (or the consumers are woken); true if some are.
bool wait_for_log_records(double timeout_s);
// Takes the queued lines (never waits).
std::vector<LogRecord> take_log_records();
// Lines dropped because the queue was full.
uint64_t dropped_log_records();
// Wakes every take_log_records() waiter (shutdown of the consumer).
void wake_log_consumers();

// Feed raw native log text (possibly partial lines) at a ggml_log_level.
void log_native_ggml_text(int ggml_level, const char * text);
// Log one whole line from llamaproc's own code.
void log_line(LogLevel level, const std::string & line);

// `text` with every byte that is not part of valid UTF-8 replaced by U+FFFD, so that it
// crosses into Python (which decodes strictly) whatever llama.cpp printed.
std::string valid_utf8(const std::string & text);

// The process-wide tail (every line from every thread).
std::vector<std::string> process_log_tail(std::size_t max_lines = 40);

}  // namespace llamaproc
