#include "proxy/client_session.hpp"

#include <span>

#include "proxy/worker.hpp"

namespace respfence::proxy {

namespace {
void no_delay(client_session::socket& s) {
  // Unix sockets have no Nagle to turn off; the error is expected there.
  asio::error_code ignored;
  s.set_option(asio::ip::tcp::no_delay(true), ignored);
}
}  // namespace

client_session::client_session(worker& w, socket s, std::shared_ptr<const routing::router> router,
                               session_core::limits lim,
                               const std::vector<asio::generic::stream_protocol::endpoint>& backends,
                               uint32_t connect_timeout_ms)
    : w_(w),
      sock_(std::move(s)),
      core_(w, std::move(router), lim),
      endpoints_(backends),
      connect_timeout_ms_(connect_timeout_ms) {
  core_.set_user(this);
  for (size_t i = 0; i < core_.link_count(); ++i) {
    links_.push_back(std::make_unique<link_io>(w.io()));
  }
  no_delay(sock_);
}

client_session::~client_session() = default;

void client_session::start() { pump(); }

void client_session::pump() {
  if (closing_) return;
  if (core_.finished() && !writing_ && !core_.has_client_output()) {
    close();
    return;
  }
  if (!writing_ && core_.has_client_output()) write_client();
  for (size_t b = 0; b < links_.size(); ++b) {
    link_io& l = *links_[b];
    if (!l.open && !l.connecting) {
      if (core_.link_needs_connect(b)) connect_link(b);
      continue;
    }
    if (!l.open) continue;
    if (!l.writing && core_.link_has_output(b)) write_link(b);
    if (!l.reading && core_.link_wants_read(b)) read_link(b);
  }
  if (!reading_ && core_.wants_client_read()) read_client();
}

void client_session::read_client() {
  auto [p, n] = core_.client_read_buffer();
  if (n == 0) return;
  reading_ = true;
  ++ops_;
  sock_.async_read_some(asio::buffer(p, n), [this](const asio::error_code& ec, size_t got) {
    reading_ = false;
    if (!closing_) {
      if (ec) {
        close();
      } else {
        core_.on_client_data(got);
        pump();
      }
    }
    op_done();
  });
}

void client_session::write_client() {
  const std::string_view out = core_.take_client_output();
  writing_ = true;
  ++ops_;
  asio::async_write(sock_, asio::buffer(out.data(), out.size()),
                    [this](const asio::error_code& ec, size_t) {
                      writing_ = false;
                      if (!closing_) {
                        if (ec) {
                          close();
                        } else {
                          core_.client_output_done();
                          pump();
                        }
                      }
                      op_done();
                    });
}

void client_session::connect_link(size_t b) {
  link_io& l = *links_[b];
  l.connecting = true;
  core_.on_link_connecting(b);
  l.sock = socket(w_.io());
  ++ops_;
  l.timer.expires_after(std::chrono::milliseconds(connect_timeout_ms_));
  l.timer.async_wait([this, b](const asio::error_code& ec) {
    link_io& lk = *links_[b];
    // A connect that takes too long is abandoned like a refused one.
    if (!ec && lk.connecting) lk.sock.close();
    op_done();
  });
  ++ops_;
  l.sock.async_connect(endpoints_[b], [this, b](const asio::error_code& ec) {
    link_io& lk = *links_[b];
    lk.connecting = false;
    lk.timer.cancel();
    if (!closing_) {
      if (ec) {
        asio::error_code ignored;
        lk.sock.close(ignored);
        core_.on_link_failed(b, false);
      } else {
        lk.open = true;
        no_delay(lk.sock);
        core_.on_link_connected(b);
      }
      pump();
    }
    op_done();
  });
}

void client_session::read_link(size_t b) {
  link_io& l = *links_[b];
  auto [p, n] = core_.link_read_buffer(b);
  l.reading = true;
  ++ops_;
  l.sock.async_read_some(asio::buffer(p, n), [this, b](const asio::error_code& ec, size_t got) {
    link_io& lk = *links_[b];
    lk.reading = false;
    if (!closing_ && lk.open) {
      if (ec) {
        close_link(b, true);
      } else {
        core_.on_link_data(b, got);
        // The core gave up on this connection (a reply that is not RESP).
        if (!core_.link_open(b)) {
          lk.open = false;
          asio::error_code ignored;
          lk.sock.close(ignored);
        }
      }
      pump();
    }
    op_done();
  });
}

void client_session::write_link(size_t b) {
  link_io& l = *links_[b];
  const std::vector<out_span>& spans = core_.take_link_output(b);
  l.bufs.clear();
  for (const out_span& s : spans) l.bufs.emplace_back(s.data, s.size);
  l.writing = true;
  ++ops_;
  // A span over the buffer list: async_write copies the sequence, and a span copies for free.
  asio::async_write(l.sock, std::span<const asio::const_buffer>(l.bufs),
                    [this, b](const asio::error_code& ec, size_t) {
                      link_io& lk = *links_[b];
                      lk.writing = false;
                      if (!closing_) {
                        core_.link_output_done(b);
                        if (ec && lk.open) close_link(b, true);
                        pump();
                      }
                      op_done();
                    });
}

void client_session::close_link(size_t b, bool was_open) {
  link_io& l = *links_[b];
  l.open = false;
  asio::error_code ignored;
  l.sock.close(ignored);
  core_.on_link_failed(b, was_open);
}

void client_session::close() {
  if (closing_) return;
  closing_ = true;
  core_.on_client_closed();
  asio::error_code ignored;
  sock_.close(ignored);
  for (auto& l : links_) {
    l->timer.cancel();
    l->sock.close(ignored);
  }
  ++ops_;
  op_done();
}

void client_session::op_done() {
  if (--ops_ == 0 && closing_) {
    // Freed from a fresh handler, never from inside one of its own.
    asio::post(w_.io(), [w = &w_, self = this] { w->remove(self); });
  }
}

}  // namespace respfence::proxy
