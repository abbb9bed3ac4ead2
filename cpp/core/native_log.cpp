#include "native_log.h"

#include "errors.h"

#include "ggml.h"
#include "llama.h"
#include "log.h"

#include <atomic>
#include <cstdint>
#include <chrono>
#include <condition_variable>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <type_traits>

namespace llamaproc {

namespace {

// Lines waiting for the consumer (the Python logger's delivery thread).
struct LogQueue {
    static constexpr std::size_t capacity = 20000;
    std::mutex mutex;
    std::condition_variable cv;
    std::deque<LogRecord> records;
    uint64_t dropped = 0;
    uint64_t wakeups = 0;
};

LogQueue & log_queue() {
    static LogQueue * queue = new LogQueue();  // never destroyed: native threads may log at exit
    return *queue;
}

std::atomic<int> g_min_level{static_cast<int>(LogLevel::error) + 100};  // nothing until asked
LogTail g_process_tail(400);

thread_local std::shared_ptr<LogTail> t_server_tail;
thread_local LineObserver t_observer;
thread_local std::string t_partial;  // text of the current line so far
thread_local LogLevel t_partial_level = LogLevel::info;
thread_local bool t_quiet = false;  // ThreadLogQuiet

void emit(LogLevel level, std::string line) {
    line = valid_utf8(line);
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) {
        line.pop_back();
    }
    if (line.empty()) {
        return;
    }
    g_process_tail.push(line);
    if (t_server_tail) {
        t_server_tail->push(line);
    }
    const bool forward = static_cast<int>(level) >= g_min_level.load(std::memory_order_relaxed);
    if (t_observer) {
        t_observer(line);  // may throw: the caller asked to abandon the native call
    }
    if (!forward) {
        return;
    }
    LogQueue & q = log_queue();
    {
        std::lock_guard<std::mutex> lock(q.mutex);
        if (q.records.size() >= LogQueue::capacity) {
            q.records.pop_front();
            ++q.dropped;
        }
        q.records.push_back(LogRecord{level, std::move(line)});
    }
    q.cv.notify_one();
}

// ggml installs a terminate handler that forks gdb on the process to print a backtrace. In
// a host process that is never wanted: say what happened and abort.
[[noreturn]] void on_terminate() {
    std::string what = "no active exception";
    if (auto current = std::current_exception()) {
        try {
            std::rethrow_exception(current);
        } catch (const std::exception & e) {
            what = e.what();
        } catch (const NativeAbort & e) {
            what = std::string("ggml assertion: ") + e.what();
        } catch (...) {
            what = "unknown exception";
        }
    }
    std::fprintf(stderr, "llamaproc: std::terminate called (%s); aborting\n", what.c_str());
    std::fflush(stderr);
    std::abort();
}

LogLevel from_ggml(ggml_log_level level) {
    switch (level) {
        case GGML_LOG_LEVEL_DEBUG: return LogLevel::debug;
        case GGML_LOG_LEVEL_WARN:  return LogLevel::warning;
        case GGML_LOG_LEVEL_ERROR: return LogLevel::error;
        default:                   return LogLevel::info;
    }
}

void append_text(ggml_log_level ggml_level, const char * text) {
    if (text == nullptr) {
        return;
    }
    // GGML_LOG_LEVEL_CONT continues the line in progress at its level
    if (ggml_level != GGML_LOG_LEVEL_CONT && t_partial.empty()) {
        t_partial_level = from_ggml(ggml_level);
        if (t_quiet && t_partial_level < LogLevel::error) {
            t_partial_level = LogLevel::debug;
        }
    }
    for (const char * p = text; *p; ++p) {
        if (*p == '\n') {
            std::string line;
            line.swap(t_partial);  // emit() may throw (a line observer): leave no half state
            emit(t_partial_level, std::move(line));
        } else {
            t_partial.push_back(*p);
        }
    }
}

void on_llama_log(ggml_log_level level, const char * text, void *) {
    append_text(level, text);
}

void on_ggml_abort(const char * message) {
    const bool guarded = t_server_tail != nullptr;
    emit(LogLevel::error, std::string("ggml assertion failed: ") + (message ? message : "?"));
    if (guarded) {
        // unwinds to the guarded thread's catch site (model load, request handler, loop)
        throw NativeAbort(message ? message : "ggml assertion failed");
    }
    // unguarded thread: ggml_abort() calls abort() after this returns, before the log queue is
    // read; stderr is where a watcher (an isolated server's host) finds the reason
    std::fprintf(stderr, "ggml assertion failed: %s\n", message ? message : "?");
    std::fflush(stderr);
}

}  // namespace

void LogTail::push(const std::string & line) {
    std::lock_guard<std::mutex> lock(mutex_);
    lines_.push_back(line);
    while (lines_.size() > capacity_) {
        lines_.pop_front();
    }
}

std::vector<std::string> LogTail::lines(std::size_t max_lines) const {
    std::lock_guard<std::mutex> lock(mutex_);
    const std::size_t n = std::min(max_lines, lines_.size());
    return std::vector<std::string>(lines_.end() - static_cast<std::ptrdiff_t>(n), lines_.end());
}

ThreadLogScope::ThreadLogScope(std::shared_ptr<LogTail> tail, LineObserver observer)
    : previous_(std::move(t_server_tail)), previous_observer_(std::move(t_observer)) {
    t_server_tail = std::move(tail);
    t_observer = std::move(observer);
}

ThreadLogScope::~ThreadLogScope() {
    t_observer = std::move(previous_observer_);  // never throw from here
    if (!t_partial.empty()) {
        emit(t_partial_level, std::move(t_partial));
        t_partial.clear();
    }
    t_server_tail = std::move(previous_);
}

ThreadLogQuiet::ThreadLogQuiet() : previous_(t_quiet) {
    t_quiet = true;
}

ThreadLogQuiet::~ThreadLogQuiet() {
    t_quiet = previous_;
}

void install_native_log_hooks() {
    static std::once_flag once;
    std::call_once(once, [] {
        llama_log_set(on_llama_log, nullptr);
        ggml_log_set(on_llama_log, nullptr);
        ggml_set_abort_callback(on_ggml_abort);
        std::set_terminate(on_terminate);
#if LLAMAPROC_WRAPS_COMMON_LOG
        // every common_log_add() call now comes to us (see the --wrap in CMakeLists.txt);
        // the common_log worker thread has nothing left to print.
        common_log_pause(common_log_main());
#endif
    });
}

bool wait_for_log_records(double timeout_s) {
    LogQueue & q = log_queue();
    std::unique_lock<std::mutex> lock(q.mutex);
    const uint64_t wakeups = q.wakeups;
    q.cv.wait_for(lock, std::chrono::duration<double>(timeout_s),
                  [&] { return !q.records.empty() || q.wakeups != wakeups; });
    return !q.records.empty();
}

std::vector<LogRecord> take_log_records() {
    LogQueue & q = log_queue();
    std::lock_guard<std::mutex> lock(q.mutex);
    std::vector<LogRecord> out(std::make_move_iterator(q.records.begin()), std::make_move_iterator(q.records.end()));
    q.records.clear();
    return out;
}

uint64_t dropped_log_records() {
    LogQueue & q = log_queue();
    std::lock_guard<std::mutex> lock(q.mutex);
    return q.dropped;
}

void wake_log_consumers() {
    LogQueue & q = log_queue();
    {
        std::lock_guard<std::mutex> lock(q.mutex);
        ++q.wakeups;
    }
    q.cv.notify_all();
}

void set_log_min_level(LogLevel min_level) {
    g_min_level.store(static_cast<int>(min_level));
}

void log_native_ggml_text(int ggml_level, const char * text) {
    append_text(static_cast<ggml_log_level>(ggml_level), text);
}

void log_line(LogLevel level, const std::string & line) {
    emit(level, line);
}

std::string valid_utf8(const std::string & text) {
    std::string out;
    out.reserve(text.size());
    const auto * p = reinterpret_cast<const unsigned char *>(text.data());
    const size_t n = text.size();
    for (size_t i = 0; i < n;) {
        const unsigned char c = p[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
        bool ok = len > 0 && i + len <= n;
        for (size_t k = 1; ok && k < len; ++k) {
            ok = (p[i + k] & 0xC0) == 0x80;
        }
        if (ok && len > 1) {  // no overlong forms, surrogates or code points past U+10FFFF
            const uint32_t cp = len == 2 ? ((c & 0x1F) << 6) | (p[i + 1] & 0x3F)
                              : len == 3 ? ((c & 0x0F) << 12) | ((p[i + 1] & 0x3F) << 6) | (p[i + 2] & 0x3F)
                                         : ((c & 0x07) << 18) | ((p[i + 1] & 0x3F) << 12) | ((p[i + 2] & 0x3F) << 6) |
                                               (p[i + 3] & 0x3F);
            ok = (len == 2 && cp >= 0x80) || (len == 3 && cp >= 0x800 && (cp < 0xD800 || cp > 0xDFFF)) ||
                 (len == 4 && cp >= 0x10000 && cp <= 0x10FFFF);
        }
        if (ok) {
            out.append(text, i, len);
            i += len;
        } else {
            out += "\xEF\xBF\xBD";  // U+FFFD
            i += 1;
        }
    }
    return out;
}

std::vector<std::string> process_log_tail(std::size_t max_lines) {
    return g_process_tail.lines(max_lines);
}

}  // namespace llamaproc

#if LLAMAPROC_WRAPS_COMMON_LOG
// The linker routes every call of common_log_add() from llama.cpp's common and server code
// here (-Wl,--wrap=<mangled name>), so server log lines reach Python instead of stderr.
// The wrap names a mangled symbol: if llama.cpp changed common_log_add's signature, the wrap
// would silently do nothing and every server line would be lost (common_log is paused). Two
// checks make that a build failure instead: the signature is asserted here, and the
// reference to __real_<name> below only links when --wrap found that exact symbol.
static_assert(std::is_same_v<decltype(&common_log_add), void (*)(common_log *, ggml_log_level, const char *, ...)>,
              "common_log_add changed: update the mangled name wrapped in CMakeLists.txt");
extern "C" void LLAMAPROC_COMMON_LOG_ADD_REAL(struct common_log *, enum ggml_log_level level, const char * fmt, ...);
extern "C" {
void (*volatile llamaproc_common_log_add_real)(struct common_log *, enum ggml_log_level, const char *, ...) =
    &LLAMAPROC_COMMON_LOG_ADD_REAL;
}

extern "C" void LLAMAPROC_COMMON_LOG_ADD_WRAPPER(struct common_log *, enum ggml_log_level level, const char * fmt, ...) {
    char stack_buf[512];
    va_list args;
    va_start(args, fmt);
    va_list copy;
    va_copy(copy, args);
    const int n = std::vsnprintf(stack_buf, sizeof(stack_buf), fmt, args);
    va_end(args);
    if (n < 0) {
        va_end(copy);
        return;
    }
    if (static_cast<size_t>(n) < sizeof(stack_buf)) {
        va_end(copy);
        llamaproc::log_native_ggml_text(level, stack_buf);
        return;
    }
    std::string big(static_cast<size_t>(n) + 1, '\0');
    std::vsnprintf(big.data(), big.size(), fmt, copy);
    va_end(copy);
    llamaproc::log_native_ggml_text(level, big.c_str());
}
#endif
