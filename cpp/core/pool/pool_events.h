// Model status events of a pool, as llama-server's router sends them on GET /models/sse:
// one JSON object per event ({"model", "event", "data"}), delivered to every subscriber (SSE
// clients and Python). Each subscriber keeps at most 1024 unread events; older ones are
// dropped first, so a subscriber that never reads costs bounded memory.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace llamaproc {

class EventQueue {
public:
    // The next event, or nothing once `timeout_s` passed, `should_stop()` is true (checked every
    // 100 ms) or the queue was closed and is empty.
    std::optional<std::string> pop(double timeout_s, const std::function<bool()> & should_stop = nullptr) {
        const auto deadline = std::chrono::steady_clock::now() +
                              std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                  std::chrono::duration<double>(timeout_s));
        std::unique_lock<std::mutex> lock(mutex_);
        while (events_.empty() && !closed_) {
            if ((should_stop && should_stop()) || std::chrono::steady_clock::now() >= deadline) {
                return std::nullopt;
            }
            cv_.wait_until(lock, std::min(deadline, std::chrono::steady_clock::now() + std::chrono::milliseconds(100)));
        }
        if (events_.empty()) {
            return std::nullopt;
        }
        std::string out = std::move(events_.front());
        events_.pop_front();
        return out;
    }

    bool closed() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return closed_ && events_.empty();
    }

private:
    friend class EventHub;
    static constexpr size_t MAX_UNREAD = 1024;

    void push(const std::string & event) {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (closed_) {
                return;
            }
            if (events_.size() >= MAX_UNREAD) {
                events_.pop_front();
            }
            events_.push_back(event);
        }
        cv_.notify_all();
    }
    void close() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            closed_ = true;
        }
        cv_.notify_all();
    }

    mutable std::mutex mutex_;
    std::condition_variable cv_;
    std::deque<std::string> events_;
    bool closed_ = false;
};

class EventHub {
public:
    std::shared_ptr<EventQueue> subscribe() {
        auto q = std::make_shared<EventQueue>();
        std::lock_guard<std::mutex> lock(mutex_);
        if (closed_) {
            q->close();
        }
        subscribers_.push_back(q);
        return q;
    }

    void publish(const std::string & event) {
        std::lock_guard<std::mutex> lock(mutex_);
        for (auto it = subscribers_.begin(); it != subscribers_.end();) {
            if (auto q = it->lock()) {
                q->push(event);
                ++it;
            } else {
                it = subscribers_.erase(it);  // nobody holds it any more
            }
        }
    }

    // Subscribers read what is left, then get nothing.
    void close() {
        std::lock_guard<std::mutex> lock(mutex_);
        closed_ = true;
        for (auto & w : subscribers_) {
            if (auto q = w.lock()) {
                q->close();
            }
        }
    }

private:
    std::mutex mutex_;
    std::vector<std::weak_ptr<EventQueue>> subscribers_;
    bool closed_ = false;
};

}  // namespace llamaproc
