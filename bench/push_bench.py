"""Push sized by measurement (`make bench` runs it after the flash sale; alone: python -m bench.push_bench).

A fast SNS stand-in, nginx answering every call with a valid PublishResponse at once (a real HTTP
server, never the bottleneck: it serves the bare client's whole rate on one worker), measures what
the client and the pipeline cost apart from SNS. moto stays the stand-in for correctness (tests).

In one run, on this machine:
1. bare boto3: publishes per second from one process (16 threads) with the client as the app
   configures it (app/channels.sns_client), and with boto3's defaults, to show what configuration
   cuts, and from one thread, to show what lock hand-offs between threads cost each send; then
   the pipeline's own client alone (app/channels.PushSender, one asyncio loop). CPU ms per send:
   the process's CPU over its sends; for the pipeline, the workers' CPU over theirs;
2. the pipeline: fans with a push device admitted at once (ADVANCE), their notices recorded and
   sent by real notification workers (`-Q notifications -P threads -c 4`, as k8s runs them), with
   1, 2 and 4 worker processes: sends per second, and admission -> handed to SNS p50/p95;
3. the seed's figure: 1,000 fans admitted within one second, admission -> SNS p95 (< 2 s).
Targets: the pipeline >= 0.8 of the bare client per process; 2 processes >= 1.7 x 1.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.common import configure, cpu_seconds, create_event, drop_database, fresh_database, make_users, percentile

ROOT = Path(__file__).resolve().parent.parent
PUBLISH_REPLY = ('<PublishResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><PublishResult>'
                 '<MessageId>bench</MessageId></PublishResult><ResponseMetadata><RequestId>bench</RequestId>'
                 '</ResponseMetadata></PublishResponse>')


def start_sns_standin() -> tuple[subprocess.Popen, str, Path]:
    binary = shutil.which("nginx")
    if not binary:
        raise SystemExit("the push bench needs nginx: apt-get install nginx-light")
    from tests.support import free_port, wait_port

    folder = Path(tempfile.mkdtemp(prefix="sns-standin-"))
    port = free_port()
    (folder / "nginx.conf").write_text(
        f"worker_processes 1;\npid {folder}/nginx.pid;\nerror_log {folder}/error.log warn;\ndaemon off;\n"
        "events { worker_connections 4096; }\n"
        f"http {{ access_log off; client_body_temp_path {folder}/body; keepalive_requests 1000000;\n"
        f"  server {{ listen 127.0.0.1:{port};\n"
        f"    location / {{ client_body_buffer_size 64k; default_type text/xml;\n"
        f"      return 200 '{PUBLISH_REPLY}'; }} }} }}\n")
    proc = subprocess.Popen([binary, "-p", str(folder), "-c", str(folder / "nginx.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    wait_port(port)
    return proc, f"http://127.0.0.1:{port}", folder


# --- 1. the bare client -------------------------------------------------------------------------

def bare_rate(sns_url: str, seconds: float, threads: int, defaults: bool = False, loop: bool = False) -> dict:
    """Publishes per second from a process of its own (no GIL shared with this one)."""
    out = subprocess.run([sys.executable, "-m", "bench.push_bench", "--bare", sns_url, "--seconds", str(seconds),
                          "--threads", str(threads), *(["--defaults"] if defaults else []),
                          *(["--loop"] if loop else [])],
                         cwd=ROOT, capture_output=True, text=True, env=os.environ.copy(), timeout=seconds + 60)
    if out.returncode != 0:
        raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def _bare_main(sns_url: str, seconds: float, threads: int, defaults: bool, loop: bool) -> None:
    os.environ["SNS_ENDPOINT_URL"] = sns_url
    from app import create_app
    from app.channels import Message, push_payload, push_sender, sns_client

    app = create_app()
    message = Message(title="Your turn", body="bench", deep_link="", web_link="", event_id=1,
                      admitted_until_iso="", kind="admitted")
    arn = "arn:aws:sns:eu-west-1:123456789012:endpoint/GCM/bench/1"

    def report(sent: int, started: float, cpu: float) -> None:
        print(json.dumps({"per_s": round(sent / (time.monotonic() - started), 1),
                          "cpu_ms_per_send": round((time.process_time() - cpu) * 1000 / sent, 3)}))

    with app.app_context():
        if loop:  # the pipeline's client alone: channels.PushSender, batches of 500, nothing else
            sender = push_sender()
            sender.publish_all([(arn, message)]).result()  # connection warm
            sent, stop = 0, time.monotonic() + seconds
            started, cpu = time.monotonic(), time.process_time()
            while time.monotonic() < stop:
                outcomes = sender.publish_all([(arn, message)] * 500).result()
                assert not any(isinstance(o, Exception) for o in outcomes), outcomes[:3]
                sent += len(outcomes)
            report(sent, started, cpu)
            return
        if defaults:
            import boto3

            client = boto3.client("sns", region_name="eu-west-1", endpoint_url=sns_url)
        else:
            client = sns_client()
        payload = push_payload(message)
        client.publish(TargetArn=arn, MessageStructure="json", Message=payload)  # connection and models warm
        done = [0] * threads
        stop = time.monotonic() + seconds

        def publish_until_stop(i: int) -> None:
            while time.monotonic() < stop:
                client.publish(TargetArn=arn, MessageStructure="json", Message=payload)
                done[i] += 1

        started, cpu = time.monotonic(), time.process_time()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(publish_until_stop, range(threads)))
        report(sum(done), started, cpu)


# --- 2. the pipeline -----------------------------------------------------------------------------

def fans_with_push_devices(app, count: int) -> list[int]:
    """``count`` users, each with one verified, enabled push device (its SNS endpoint as registration
    would have made it) and its channel cache, so that a join marks them notifiable."""
    from sqlalchemy import update

    from app.auth.models import User
    from app.db import new_uuid, utcnow
    from app.extensions import db
    from app.notifications.models import Device
    from app.notifications.services import refresh_cache

    ids = [fan["id"] for fan in make_users(app, count)]
    with app.app_context():
        db.session.execute(update(User).where(User.id.in_(ids)).values(notify_by_email=False))
        now = utcnow()
        db.session.execute(Device.__table__.insert(), [
            {"id": new_uuid(), "user_id": uid, "channel": "push", "platform": "fcm", "target": f"bench-fcm-{uid}",
             "target_hash": f"{uid:064d}", "exclusive_key": f"push:{uid:064d}", "enabled": True,
             "endpoint_arn": f"arn:aws:sns:eu-west-1:123456789012:endpoint/GCM/bench/{uid}", "verified_at": now,
             "created_at": now, "updated_at": now} for uid in ids])
        db.session.commit()
        for uid in ids:
            refresh_cache(uid)
    return ids


def _machine_jiffies() -> tuple[int, int]:
    """(busy, total) CPU time of the whole machine so far, every core (Linux /proc/stat)."""
    values = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def pipeline(app, processes: int, fans: int, threads: int = 4) -> dict[str, Any]:
    """Admit ``fans`` at once and time their pushes through ``processes`` notification workers."""
    from sqlalchemy import func, select

    from app.extensions import db
    from app.notifications.models import Notification
    from app.queue.services import advance, join
    from tests.support import start_worker

    ids = fans_with_push_devices(app, fans)
    event_id, _ = create_event(app, admit_per_minute=600_000, max_active=1_000_000)
    workers = [start_worker(concurrency=threads, name=f"push{processes}-{i}", queues="notifications", pool="threads")
               for i in range(processes)]
    cpu_before = [cpu_seconds(w.proc.pid) for w in workers]  # each is ready (it answered a ping)
    try:
        with app.test_request_context():
            for uid in ids:
                join(event_id, uid)
            started, machine_before = time.time(), _machine_jiffies()
            admitted = advance(event_id, max_batch=fans, force=fans).admitted
        assert len(admitted) == fans, f"admitted {len(admitted)} of {fans}"
        deadline = time.time() + int(os.environ.get("PUSH_BENCH_TIMEOUT", "300"))
        while time.time() < deadline:  # a count per poll: this process must not take the workers' CPU
            with app.app_context():
                done = db.session.scalar(select(func.count()).where(Notification.event_id == event_id,
                                                                    Notification.status.in_(("sent", "failed"))))
                db.session.rollback()
            if done >= fans:
                break
            time.sleep(0.2)
        cpu = sum(cpu_seconds(w.proc.pid) - before for w, before in zip(workers, cpu_before, strict=True))
        busy, total = (after - before for after, before in zip(_machine_jiffies(), machine_before, strict=True))
    finally:
        for worker in workers:
            worker.stop()
    with app.app_context():
        rows = db.session.execute(select(Notification.status, Notification.admitted_at, Notification.sent_at)
                                  .where(Notification.event_id == event_id)).all()
        db.session.rollback()
    sent = [r for r in rows if r.status == "sent"]
    first, last = min(r.sent_at for r in sent), max(r.sent_at for r in sent)
    latency = [(r.sent_at - r.admitted_at).total_seconds() for r in sent]
    return {"processes": processes, "fans": fans, "sent": len(sent), "failed": len(rows) - len(sent),
            "sends_per_s": round(len(sent) / max((last - first).total_seconds(), 1e-3), 1),
            "worker_cpu_ms_per_send": round(cpu * 1000 / max(len(sent), 1), 3),
            # every core's busy share from the admissions to the last outcome (everything on the
            # machine included): 100 % means no core had time left
            "machine_cpu_busy": round(busy / max(total, 1), 2),
            "admission_to_sns_ms": {"p50": round(percentile(latency, 0.5) * 1000, 1),
                                    "p95": round(percentile(latency, 0.95) * 1000, 1)},
            "admit_seconds": round(time.time() - started, 1)}


def table(result: dict[str, Any]) -> str:
    bare = result["bare_per_s"]
    one = result["pipeline"][0]["sends_per_s"]
    lines = ["", "push (fast SNS stand-in: nginx)      per s   vs bare  vs 1 proc  CPU ms/send  "
             "admission->SNS p50/p95 ms  machine busy  target",
             "-" * 135,
             f"bare boto3, app's client, 1 process {bare:7.0f}      1.00             "
             f"{result['bare_cpu_ms_per_send']:9.3f}",
             f"bare boto3, boto3 defaults          {result['bare_defaults_per_s']:7.0f}  "
             f"{result['bare_defaults_per_s'] / bare:8.2f}",
             f"bare boto3, app's client, 1 thread  {result['bare_one_thread_per_s']:7.0f}  "
             f"{result['bare_one_thread_per_s'] / bare:8.2f}             "
             f"{result['bare_one_thread_cpu_ms_per_send']:9.3f}",
             f"the pipeline's client alone (loop)  {result['bare_loop_per_s']:7.0f}  "
             f"{result['bare_loop_per_s'] / bare:8.2f}             "
             f"{result['bare_loop_cpu_ms_per_send']:9.3f}"]
    for run in result["pipeline"]:
        n = run["processes"]
        target = ">= 0.8 of bare" if n == 1 else (">= 1.7 x 1 process" if n == 2 else "")
        lat = run["admission_to_sns_ms"]
        lines.append(f"pipeline, {n} worker process{'es' if n > 1 else '  '}     {run['sends_per_s']:7.0f}  "
                     f"{run['sends_per_s'] / (bare * n):8.2f}  {run['sends_per_s'] / one:9.2f}  "
                     f"{run['worker_cpu_ms_per_send']:11.3f}  {lat['p50']:10.0f} / {lat['p95']:<10.0f}  "
                     f"{run['machine_cpu_busy']:12.0%}  {target}")
    burst = result.get("burst")
    if burst:
        lines.append(f"1,000 fans admitted at once, {burst['processes']} processes: admission -> SNS p95 "
                     f"{burst['admission_to_sns_ms']['p95']:.0f} ms (target < 2,000); {burst['failed']} failed")
    cpu = result["pipeline"][0]["worker_cpu_ms_per_send"]
    lines.append(f"cores per 1,000 pushes/s: about {cpu:.1f} (the worker's CPU per send x 1,000; "
                 f"one process sends {one:.0f}/s)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bare", help=argparse.SUPPRESS)
    parser.add_argument("--defaults", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--loop", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--fans", type=int, default=3000, help="fans admitted per pipeline run")
    parser.add_argument("--processes", default="1,2,4", help="worker process counts of the pipeline runs")
    parser.add_argument("--no-burst", action="store_true", help="skip the 1,000-fan burst")
    parser.add_argument("--worker-concurrency", type=int, default=4, help="each worker's -c (threads pool)")
    parser.add_argument("--output", default=str(ROOT / "var" / "bench" / "push.json"))
    args = parser.parse_args()
    if args.bare:
        _bare_main(args.bare, args.seconds, args.threads, args.defaults, args.loop)
        return
    env = configure()
    os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                       "AWS_DEFAULT_REGION": "eu-west-1", "VERIFY_CHANNELS": "0",
                       "SNS_FCM_APPLICATION_ARN": "arn:aws:sns:eu-west-1:123456789012:app/GCM/bench"})
    standin, sns_url, folder = start_sns_standin()
    os.environ["SNS_ENDPOINT_URL"] = sns_url
    fresh_database(env["DATABASE_URL"])
    from app import create_app

    app = create_app()
    result: dict[str, Any] = {"at": time.strftime("%Y-%m-%d %H:%M:%S"), "machine_cores": os.cpu_count()}
    try:
        bare = bare_rate(sns_url, args.seconds, args.threads, defaults=False)
        result["bare_per_s"], result["bare_cpu_ms_per_send"] = bare["per_s"], bare["cpu_ms_per_send"]
        result["bare_defaults_per_s"] = bare_rate(sns_url, args.seconds, args.threads, defaults=True)["per_s"]
        # the same client from one thread: what lock hand-offs between sender threads cost each send
        one_thread = bare_rate(sns_url, args.seconds, 1)
        result["bare_one_thread_per_s"], result["bare_one_thread_cpu_ms_per_send"] = (
            one_thread["per_s"], one_thread["cpu_ms_per_send"])
        loop = bare_rate(sns_url, args.seconds, 1, loop=True)
        result["bare_loop_per_s"], result["bare_loop_cpu_ms_per_send"] = loop["per_s"], loop["cpu_ms_per_send"]
        result["pipeline"] = [pipeline(app, int(n), args.fans, args.worker_concurrency)
                              for n in args.processes.split(",")]
        if not args.no_burst:
            result["burst"] = pipeline(app, 2, 1000, args.worker_concurrency)
    finally:
        standin.terminate()
        standin.wait(10)
        shutil.rmtree(folder, ignore_errors=True)
        drop_database(env["DATABASE_URL"])
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print(table(result))
    print(f"\nJSON: {args.output}")


if __name__ == "__main__":
    main()
