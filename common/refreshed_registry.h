// A prometheus-cpp registry whose values are brought up to date at the
// moment of a scrape: for figures that are read rather than pushed (a
// process's memory, seconds since a worker was last heard from).
#pragma once

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>

#include <functional>
#include <memory>
#include <utility>
#include <vector>

namespace tl {

class RefreshedRegistry : public prometheus::Collectable {
 public:
  RefreshedRegistry(std::shared_ptr<prometheus::Registry> registry, std::function<void()> refresh)
      : registry_(std::move(registry)), refresh_(std::move(refresh)) {}

  std::vector<prometheus::MetricFamily> Collect() const override {
    refresh_();
    return registry_->Collect();
  }

 private:
  const std::shared_ptr<prometheus::Registry> registry_;
  const std::function<void()> refresh_;
};

}  // namespace tl
