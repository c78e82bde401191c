"""A foreign client of ticklane's gRPC API: Python grpcio, with stubs
generated from the repository's proto/ticklane/v1/ticklane.proto by
grpcio-tools (the end-to-end test generates them into STUBS).

    client.py STUBS ADDR TOKEN check STOCK UNKNOWN_STOCK SPARE_FEED
        calls every unary method, the refusals included (and sets
        log_interval to 2s); prints JSON
    client.py STUBS ADDR TOKEN streams SECONDS
        follows the four streams for SECONDS; prints the updates' counts
    client.py STUBS ADDR TOKEN kernel GROUP PORT LOCAL SECONDS
        a kernel UDP socket joined to GROUP on LOCAL's interface: prints
        'ready', then, after SECONDS, how many datagrams it received
"""

import json
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, sys.argv[1])

import grpc  # noqa: E402
from ticklane.v1 import ticklane_pb2 as pb  # noqa: E402
from ticklane.v1 import ticklane_pb2_grpc as rpc  # noqa: E402


def refusal(call):
    """The status code name of a call that must fail, or 'OK' if it did not."""
    try:
        call()
    except grpc.RpcError as e:
        return e.code().name, e.details()
    return "OK", ""


def check(stub, token, stock, unknown, spare):
    auth = [("authorization", "Bearer " + token)]
    out = {}
    status = stub.GetStatus(pb.GetStatusRequest(), timeout=10)
    out["status"] = {"mode": status.mode, "feeds": [f.feed for f in status.feeds],
                     "sessions": [s.session for s in status.sessions], "version": status.version}
    stats = stub.GetStats(pb.GetStatsRequest(), timeout=10)
    out["counters"] = {c.name + ("{" + c.feed + "}" if c.feed else ""): c.value for c in stats.counters}
    out["feeds"] = [[f.feed, f.line, f.packets] for f in stub.ListFeeds(pb.ListFeedsRequest(), timeout=10).feeds]
    book = stub.GetBook(pb.GetBookRequest(symbol=stock), timeout=10)
    out["book"] = {"symbol": book.symbol, "session": book.session, "seq": book.seq, "stale": book.stale,
                   "bids": [[l.price, l.shares] for l in book.bids],
                   "asks": [[l.price, l.shares] for l in book.asks]}
    top = stub.GetBook(pb.GetBookRequest(locate=book.locate, depth=1), timeout=10)
    out["top"] = {"bids": len(top.bids), "asks": len(top.asks), "bid_depth": top.bid_depth}
    out["unknown_stock"] = refusal(lambda: stub.GetBook(pb.GetBookRequest(symbol=unknown), timeout=10))
    out["bad_symbol"] = refusal(lambda: stub.GetBook(pb.GetBookRequest(symbol="TOOLONGSYMBOL"), timeout=10))
    out["no_token"] = refusal(lambda: stub.Subscribe(pb.FeedRequest(feed=spare), timeout=10))
    out["wrong_token"] = refusal(lambda: stub.Subscribe(
        pb.FeedRequest(feed=spare), metadata=[("authorization", "Bearer wrong")], timeout=10))
    out["unicast"] = refusal(lambda: stub.Subscribe(pb.FeedRequest(feed="198.18.0.1:5000"), metadata=auth, timeout=10))
    out["port_zero"] = refusal(lambda: stub.Subscribe(pb.FeedRequest(feed="239.1.1.1:0"), metadata=auth, timeout=10))
    out["oversized"] = refusal(lambda: stub.Subscribe(pb.FeedRequest(feed="2" * 200_000), metadata=auth, timeout=10))
    out["unsubscribe_unknown"] = refusal(lambda: stub.Unsubscribe(
        pb.FeedRequest(feed="239.9.9.9:9999"), metadata=auth, timeout=10))
    sub = stub.Subscribe(pb.FeedRequest(feed=spare), metadata=auth, timeout=10)
    out["subscribed"] = [sub.feed, sub.line]
    out["feeds_with_spare"] = [f.feed for f in stub.ListFeeds(pb.ListFeedsRequest(), timeout=10).feeds]
    out["again"] = refusal(lambda: stub.Subscribe(pb.FeedRequest(feed=spare), metadata=auth, timeout=10))
    unsub = stub.Unsubscribe(pb.FeedRequest(feed=spare), metadata=auth, timeout=10)
    out["unsubscribed"] = [unsub.feed, unsub.line]
    out["feeds_after"] = [f.feed for f in stub.ListFeeds(pb.ListFeedsRequest(), timeout=10).feeds]
    out["rx_timestamps"] = stub.GetStatus(pb.GetStatusRequest(), timeout=10).rx_timestamps
    out["histograms"] = {h.name: {"count": h.count, "p50_ns": h.p50_ns, "p99_ns": h.p99_ns,
                                  "source": h.source, "buckets": len(h.buckets)}
                         for h in stats.histograms}
    # The run-time settings: listed, read, changed (with the token), refused.
    out["config_keys"] = [e.key for e in stub.ListConfig(pb.ListConfigRequest(), timeout=10).entries]
    out["config_get"] = stub.GetConfig(pb.ConfigKey(key="log_interval"), timeout=10).value
    entry = stub.SetConfig(pb.SetConfigRequest(key="log_interval", value="2s"), metadata=auth, timeout=10)
    out["config_set"] = [entry.value, entry.stored]
    out["config_after"] = stub.GetConfig(pb.ConfigKey(key="log_interval"), timeout=10).value
    out["config_no_token"] = refusal(lambda: stub.SetConfig(
        pb.SetConfigRequest(key="log_interval", value="1s"), timeout=10))
    out["config_bad_key"] = refusal(lambda: stub.GetConfig(pb.ConfigKey(key="nosuch"), timeout=10))
    out["config_bad_value"] = refusal(lambda: stub.SetConfig(
        pb.SetConfigRequest(key="max_streams", value="lots"), metadata=auth, timeout=10))
    return out


def streams(stub, seconds):
    methods = {"bbo": stub.StreamBbo, "trades": stub.StreamTrades,
               "vwap": stub.StreamVwap, "events": stub.StreamSessionEvents}
    counts = {name: 0 for name in methods}
    dropped = {name: 0 for name in methods}
    calls = {}

    def follow(name):
        call = methods[name](pb.StreamRequest(), timeout=seconds)
        calls[name] = call
        try:
            for update in call:
                if update.WhichOneof("update") == "dropped":
                    dropped[name] += update.dropped.count
                else:
                    counts[name] += 1
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                raise

    threads = [threading.Thread(target=follow, args=(n,)) for n in methods]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 10)
    return {"counts": counts, "dropped": dropped}


def kernel(group, port, local, seconds):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("", port))
    mreq = struct.pack("4s4s", socket.inet_aton(group), socket.inet_aton(local))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
    s.settimeout(0.2)
    print("ready", flush=True)
    n, end = 0, time.time() + seconds
    while time.time() < end:
        try:
            s.recv(2048)
            n += 1
        except socket.timeout:
            pass
    return n


def main():
    stubs, addr, token, mode = sys.argv[1:5]
    if mode == "kernel":
        group, port, local, seconds = sys.argv[5:9]
        print(kernel(group, int(port), local, float(seconds)))
        return
    channel = grpc.insecure_channel(addr)
    grpc.channel_ready_future(channel).result(timeout=10)
    stub = rpc.ApplianceStub(channel)
    if mode == "check":
        result = check(stub, token, *sys.argv[5:8])
    elif mode == "streams":
        result = streams(stub, float(sys.argv[5]))
    else:
        raise SystemExit("unknown mode " + mode)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
