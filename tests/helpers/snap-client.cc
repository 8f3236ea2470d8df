// soci-nbd tests: a gRPC client of the snapshots service, to call
// soci-nbd-snapshotter directly (without containerd's own checks in
// front) and see the codes and messages containerd would get.
//
//   snap-client SOCKET prepare|view KEY [PARENT [K=V...]]
//   snap-client SOCKET commit NAME KEY [K=V...]
//   snap-client SOCKET mounts|remove|stat|usage KEY
//   snap-client SOCKET update KEY PATH... -- [K=V...]
//   snap-client SOCKET list|cleanup
//
// Prints the result (mounts one per line: TYPE SOURCE OPTIONS; infos as
// NAME KIND PARENT LABELS) and exits 0, or prints "CODE: message" on
// stderr and exits 1.
#include <cstdio>
#include <cstring>
#include <string>

#include <grpcpp/grpcpp.h>

#include "snapshots.grpc.pb.h"

namespace pb = containerd::services::snapshots::v1;

static const char *const kinds[] = { "unknown", "view", "active",
                                     "committed" };

static int
done(const grpc::Status &st)
{
  static const char *const names[] = {
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
    "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
    "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
  };
  int c = st.error_code();

  if (st.ok())
    return 0;
  fprintf(stderr, "%s: %s\n", c >= 0 && c <= 16 ? names[c] : "?",
          st.error_message().c_str());
  return 1;
}

template <class M>
static void
labels(M *m, int argc, char **argv, int from)
{
  for (int i = from; i < argc; i++) {
    const char *eq = strchr(argv[i], '=');

    if (eq)
      (*m)[std::string(argv[i], eq - argv[i])] = eq + 1;
  }
}

template <class R>
static void
print_mounts(const R &r)
{
  for (const auto &m : r.mounts()) {
    printf("%s %s", m.type().c_str(), m.source().c_str());
    for (int i = 0; i < m.options_size(); i++)
      printf("%s%s", i ? "," : " ", m.options(i).c_str());
    printf("\n");
  }
}

static void
print_info(const pb::Info &i)
{
  int k = i.kind();

  printf("%s %s %s", i.name().c_str(), k >= 0 && k <= 3 ? kinds[k] : "?",
         i.parent().empty() ? "-" : i.parent().c_str());
  // Sorted, for stable output.
  std::map<std::string, std::string> l(i.labels().begin(), i.labels().end());
  for (const auto &kv : l)
    printf(" %s=%s", kv.first.c_str(), kv.second.c_str());
  printf("\n");
}

int
main(int argc, char **argv)
{
  if (argc < 3) {
    fprintf(stderr, "usage: snap-client SOCKET OP ARGS...\n");
    return 2;
  }
  auto ch = grpc::CreateChannel(std::string("unix:") + argv[1],
                                grpc::InsecureChannelCredentials());
  auto stub = pb::Snapshots::NewStub(ch);
  std::string op = argv[2];
  const char *a3 = argc > 3 ? argv[3] : "", *a4 = argc > 4 ? argv[4] : "";
  grpc::ClientContext ctx;
  google::protobuf::Empty empty;
  grpc::Status st;

  if (op == "prepare" || op == "view") {
    if (op == "prepare") {
      pb::PrepareSnapshotRequest rq;
      pb::PrepareSnapshotResponse r;

      rq.set_key(a3);
      rq.set_parent(a4);
      labels(rq.mutable_labels(), argc, argv, 5);
      st = stub->Prepare(&ctx, rq, &r);
      print_mounts(r);
    }
    else {
      pb::ViewSnapshotRequest rq;
      pb::ViewSnapshotResponse r;

      rq.set_key(a3);
      rq.set_parent(a4);
      labels(rq.mutable_labels(), argc, argv, 5);
      st = stub->View(&ctx, rq, &r);
      print_mounts(r);
    }
  }
  else if (op == "commit") {
    pb::CommitSnapshotRequest rq;

    rq.set_name(a3);
    rq.set_key(a4);
    labels(rq.mutable_labels(), argc, argv, 5);
    st = stub->Commit(&ctx, rq, &empty);
  }
  else if (op == "mounts") {
    pb::MountsRequest rq;
    pb::MountsResponse r;

    rq.set_key(a3);
    st = stub->Mounts(&ctx, rq, &r);
    print_mounts(r);
  }
  else if (op == "remove") {
    pb::RemoveSnapshotRequest rq;

    rq.set_key(a3);
    st = stub->Remove(&ctx, rq, &empty);
  }
  else if (op == "stat") {
    pb::StatSnapshotRequest rq;
    pb::StatSnapshotResponse r;

    rq.set_key(a3);
    st = stub->Stat(&ctx, rq, &r);
    if (st.ok())
      print_info(r.info());
  }
  else if (op == "usage") {
    pb::UsageRequest rq;
    pb::UsageResponse r;

    rq.set_key(a3);
    st = stub->Usage(&ctx, rq, &r);
    if (st.ok())
      printf("%lld %lld\n", (long long) r.size(), (long long) r.inodes());
  }
  else if (op == "update") {
    pb::UpdateSnapshotRequest rq;
    pb::UpdateSnapshotResponse r;
    int i = 4;

    rq.mutable_info()->set_name(a3);
    for (; i < argc && strcmp(argv[i], "--") != 0; i++)
      rq.mutable_update_mask()->add_paths(argv[i]);
    labels(rq.mutable_info()->mutable_labels(), argc, argv, i + 1);
    st = stub->Update(&ctx, rq, &r);
    if (st.ok())
      print_info(r.info());
  }
  else if (op == "list") {
    pb::ListSnapshotsRequest rq;
    pb::ListSnapshotsResponse r;

    if (argc > 3)
      rq.add_filters(a3);
    auto rd = stub->List(&ctx, rq);
    while (rd->Read(&r))
      for (const auto &i : r.info())
        print_info(i);
    st = rd->Finish();
  }
  else if (op == "cleanup") {
    pb::CleanupRequest rq;

    st = stub->Cleanup(&ctx, rq, &empty);
  }
  else {
    fprintf(stderr, "snap-client: unknown operation %s\n", op.c_str());
    return 2;
  }
  return done(st);
}
