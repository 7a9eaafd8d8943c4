// Bad input against a real tlserver: a thousand random and mutated JobSpecs,
// a thousand malformed job.json documents, an oversized message. The server
// must stay up, answer each with a clear error naming a field (or accept a
// mutation that happens to be valid), and leave queued jobs as they were.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <regex>
#include <string>
#include <vector>

#include "client/job_file.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/reflection.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/message_differencer.h"
#include "tests/cluster.h"

namespace tl {
namespace {

using ::google::protobuf::Descriptor;
using ::google::protobuf::FieldDescriptor;
using ::google::protobuf::Message;
using ::google::protobuf::Reflection;
using ::tl::testing::Cluster;
using ::tl::testing::Get;
using ::tl::testing::Submit;
using ::tl::testing::TinySpec;
using ::tl::v1::Job;
using ::tl::v1::JobSpec;
using namespace std::chrono_literals;

constexpr int kFuzzCases = 1000;

// Values chosen to hit bounds, types and paths, plus random ones.
class Mutator {
 public:
  explicit Mutator(uint64_t seed) : random_(seed) {}

  // Changes one to three leaf fields of `spec` anywhere in its tree.
  void Mutate(JobSpec& spec) {
    const int changes = 1 + Pick(3);
    for (int i = 0; i < changes; ++i) MutateOne(spec, /*depth=*/0);
  }

  int Pick(int n) { return std::uniform_int_distribution<int>(0, n - 1)(random_); }

  // Valid UTF-8 (proto3 strings must be: a message with invalid UTF-8 is refused by the
  // transport before the server sees it), with control characters, '/', '.' and non-ASCII.
  std::string RandomText(size_t length) {
    static const char* const kPieces[] = {"a", "Z", "0", "/", ".", "..", " ", "\t", "\n", "%",
                                          "\\", "\"", "\xc3\xa9", "\xe2\x82\xac",
                                          "\xf0\x9f\x90\x88", "\x01"};
    std::string text;
    for (size_t i = 0; i < length; ++i) text += kPieces[Pick(std::size(kPieces))];
    return text;
  }

  std::string RandomBytes(size_t length) {
    std::string bytes(length, '\0');
    for (char& c : bytes) c = static_cast<char>(Pick(256));
    return bytes;
  }

 private:
  void MutateOne(Message& message, int depth) {
    const Descriptor* descriptor = message.GetDescriptor();
    const Reflection* reflection = message.GetReflection();
    const FieldDescriptor* field = descriptor->field(Pick(descriptor->field_count()));
    if (field->is_repeated()) {
      if (field->cpp_type() == FieldDescriptor::CPPTYPE_STRING) {
        reflection->AddString(&message, field, RandomString());
      } else {
        reflection->ClearField(&message, field);
      }
      return;
    }
    switch (field->cpp_type()) {
      case FieldDescriptor::CPPTYPE_MESSAGE:
        if (depth < 3 && Pick(4) != 0) {
          MutateOne(*reflection->MutableMessage(&message, field), depth + 1);
        } else {
          reflection->ClearField(&message, field);
        }
        return;
      case FieldDescriptor::CPPTYPE_INT32:
        reflection->SetInt32(&message, field, RandomInt32());
        return;
      case FieldDescriptor::CPPTYPE_INT64:
        reflection->SetInt64(&message, field, RandomInt32() * int64_t{1} << Pick(33));
        return;
      case FieldDescriptor::CPPTYPE_UINT32:
        reflection->SetUInt32(&message, field, static_cast<uint32_t>(RandomInt32()));
        return;
      case FieldDescriptor::CPPTYPE_UINT64:
        reflection->SetUInt64(&message, field, static_cast<uint64_t>(RandomInt32()) << Pick(33));
        return;
      case FieldDescriptor::CPPTYPE_DOUBLE:
        reflection->SetDouble(&message, field, RandomDouble());
        return;
      case FieldDescriptor::CPPTYPE_FLOAT:
        reflection->SetFloat(&message, field, static_cast<float>(RandomDouble()));
        return;
      case FieldDescriptor::CPPTYPE_BOOL:
        reflection->SetBool(&message, field, Pick(2) == 1);
        return;
      case FieldDescriptor::CPPTYPE_ENUM:
        // proto3 enums are open: unknown numbers arrive as they are.
        reflection->SetEnumValue(&message, field, RandomInt32() % 100);
        return;
      case FieldDescriptor::CPPTYPE_STRING:
        reflection->SetString(&message, field, RandomString());
        return;
    }
  }

  int32_t RandomInt32() {
    static const int32_t kEdges[] = {0, -1, 1, 2, 7, 1000, 1001, 4096, 4097, -1000000,
                                     std::numeric_limits<int32_t>::max(),
                                     std::numeric_limits<int32_t>::min()};
    if (Pick(2) == 0) return kEdges[Pick(std::size(kEdges))];
    return std::uniform_int_distribution<int32_t>(-5000, 5000)(random_);
  }

  double RandomDouble() {
    static const double kEdges[] = {0.0, -0.0, -1.0, 1.0, 0.5, 0.9, 1e-13, 11.0, 1e308,
                                    std::numeric_limits<double>::quiet_NaN(),
                                    std::numeric_limits<double>::infinity(),
                                    -std::numeric_limits<double>::infinity(),
                                    std::numeric_limits<double>::denorm_min()};
    if (Pick(2) == 0) return kEdges[Pick(std::size(kEdges))];
    return std::uniform_real_distribution<double>(-2.0, 2.0)(random_);
  }

  std::string RandomString() {
    static const char* const kEdges[] = {"",
                                         "..",
                                         "../../etc/passwd",
                                         "/etc",
                                         "/",
                                         "images",
                                         "images/red",
                                         "backbones/tiny.pt",
                                         "backbones/tiny.json",
                                         "backbones",
                                         "no/such/folder",
                                         "0123456789abcdef",
                                         "cuda",
                                         "cpu",
                                         "tpu",
                                         "images/../../..",
                                         "./images"};
    switch (Pick(3)) {
      case 0:
        return kEdges[Pick(std::size(kEdges))];
      case 1:
        return RandomText(Pick(40));
      default:
        return std::string(1 + Pick(3000), static_cast<char>('a' + Pick(26)));
    }
  }

  std::mt19937_64 random_;
};

// The message names a JobSpec field, as in "training.epochs is -1; ...".
bool NamesAField(const std::string& message) {
  static const std::regex kField(
      R"(\b(spec|name|priority|backbone|dataset|preprocessing|training|resources|evaluate|share_with)(\.[a-z_]+)*\b)");
  return std::regex_search(message, kField);
}

grpc::Status SubmitRaw(tl::v1::JobService::Stub& stub, const JobSpec& spec, Job* job) {
  tl::v1::SubmitJobRequest request;
  *request.mutable_spec() = spec;
  request.set_owner("fuzz");
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + 10s);
  return stub.SubmitJob(&context, request, job);
}

TEST(BadInputTest, MutatedSpecsGetFieldNamedErrorsAndTouchNothingQueued) {
  Cluster cluster;
  cluster.StartServer();  // no worker: every accepted job stays queued
  std::vector<Job> bystanders;
  for (int i = 0; i < 3; ++i) {
    JobSpec spec = TinySpec(3 + i);
    spec.set_priority(i);
    bystanders.push_back(Submit(cluster, spec));
    ASSERT_EQ(bystanders.back().state(), Job::QUEUED);
  }

  Mutator mutator(/*seed=*/20261128);
  int accepted = 0;
  int refused = 0;
  int byte_mutations = 0;
  std::vector<std::string> unnamed;
  for (int i = 0; i < kFuzzCases; ++i) {
    JobSpec spec = TinySpec(1);
    if (i % 4 == 3) {
      // Flip bytes of the encoding; what still parses is sent.
      std::string bytes = spec.SerializeAsString();
      for (int flips = 1 + mutator.Pick(4); flips > 0; --flips) {
        bytes[mutator.Pick(static_cast<int>(bytes.size()))] =
            static_cast<char>(mutator.Pick(256));
      }
      JobSpec parsed;
      if (parsed.ParseFromString(bytes)) {
        spec = parsed;
        ++byte_mutations;
      } else {
        mutator.Mutate(spec);
      }
    } else {
      mutator.Mutate(spec);
    }
    Job reply;
    const grpc::Status status = SubmitRaw(cluster.stub(), spec, &reply);
    if (status.ok()) {
      ++accepted;
      continue;
    }
    ++refused;
    EXPECT_TRUE(status.error_code() == grpc::StatusCode::INVALID_ARGUMENT ||
                status.error_code() == grpc::StatusCode::FAILED_PRECONDITION)
        << "case " << i << ": " << status.error_code() << " " << status.error_message()
        << "\n" << spec.ShortDebugString().substr(0, 500);
    if (!NamesAField(status.error_message()) && unnamed.size() < 10) {
      unnamed.push_back(status.error_message());
    }
  }
  EXPECT_TRUE(unnamed.empty()) << "errors that name no field, e.g.: " << unnamed.front();
  ASSERT_FALSE(cluster.server().Exited()) << cluster.server().Log();
  for (const Job& before : bystanders) {
    const Job after = Get(cluster, before.id());
    EXPECT_EQ(after.state(), Job::QUEUED);
    EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(after.spec(), before.spec()));
    EXPECT_EQ(after.attempt(), 0);
  }
  std::cout << "[ figures ] " << kFuzzCases << " mutated specs (" << byte_mutations
            << " by flipped bytes): " << refused << " refused naming a field, " << accepted
            << " valid and queued; server up, 3 queued jobs untouched\n";
  EXPECT_GT(refused, kFuzzCases / 2);
}

TEST(BadInputTest, InvalidUtf8IsRefusedAndTheServerStaysUp) {
  Cluster cluster;
  cluster.StartServer();
  JobSpec spec = TinySpec(1);
  spec.set_name(std::string("bad \xff\xfe name"));
  Job reply;
  EXPECT_FALSE(SubmitRaw(cluster.stub(), spec, &reply).ok());
  EXPECT_EQ(Submit(cluster, TinySpec(1)).state(), Job::QUEUED);
  EXPECT_FALSE(cluster.server().Exited());
}

TEST(BadInputTest, OversizedMessagesAreRefusedWithResourceExhausted) {
  Cluster cluster;
  cluster.StartServer({"--max_message_bytes=1048576"});
  JobSpec spec = TinySpec(1);
  spec.set_name(std::string(2 << 20, 'x'));
  Job reply;
  const grpc::Status status = SubmitRaw(cluster.stub(), spec, &reply);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
  // The server is still there for the next, normal call.
  EXPECT_EQ(Submit(cluster, TinySpec(1)).state(), Job::QUEUED);
}

TEST(BadInputTest, MalformedJobFilesAreRefusedBeforeAnyCall) {
  std::string valid;
  ASSERT_TRUE(google::protobuf::util::MessageToJsonString(TinySpec(2), &valid).ok());
  Mutator mutator(/*seed=*/7);
  int refused = 0;
  int parsed = 0;
  for (int i = 0; i < kFuzzCases; ++i) {
    std::string text = valid;
    switch (i % 4) {
      case 0:  // truncated
        text.resize(mutator.Pick(static_cast<int>(text.size())));
        break;
      case 1:  // bytes replaced
        for (int flips = 1 + mutator.Pick(3); flips > 0; --flips) {
          text[mutator.Pick(static_cast<int>(text.size()))] = static_cast<char>(mutator.Pick(256));
        }
        break;
      case 2:  // an unknown or misspelt field
        text.insert(1, "\"trainig\": {\"epochs\": 1}, ");
        break;
      default:  // garbage
        text = mutator.RandomBytes(1 + mutator.Pick(200));
        break;
    }
    absl::StatusOr<JobSpec> spec = client::ParseJobSpecJson(text, "job.json");
    if (spec.ok()) {
      ++parsed;
      continue;
    }
    ++refused;
    EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(spec.status().message().find("job.json"), std::string::npos)
        << spec.status().message();
  }
  std::cout << "[ figures ] " << kFuzzCases << " malformed job.json documents: " << refused
            << " refused naming the file, " << parsed << " still valid\n";
  EXPECT_GT(refused, kFuzzCases * 3 / 4);
}

}  // namespace
}  // namespace tl
