"""``refbench ddp``: how a workload's training step scales under DistributedDataParallel."""
from __future__ import annotations

import sys

from refbench.cli._options import (csv_list, merged_variants, needs_torch, path_option, print_table, starts_again,
                                   table_options, writable)
from refbench.run.settings import non_negative_int, positive_float, positive_int, variant_option


def register(sub) -> None:
    p = sub.add_parser(
        "ddp", help="data-parallel scaling under DistributedDataParallel",
        description="Measure how a workload's training step scales under DistributedDataParallel: world sizes "
                    "1, 2, 4, ... up to --nproc, each a fresh torchrun launch (gloo on the CPU, NCCL on GPUs), "
                    "one record per world size with samples/s, scaling efficiency, step times and all-reduce share.",
        epilog="examples:\n  refbench ddp --workloads mlp,lenet5 --nproc 2\n"
               "  refbench ddp --workloads resnet18_cifar --nproc 8 --nnodes 2 --node-rank 0 "
               "--rdzv-endpoint node0:29500")
    p.add_argument("--workloads", type=csv_list, required=True, help="names or shell patterns ('lenet*'), or all")
    p.add_argument("--nproc", type=positive_int, required=True,
                   help="ranks per node; world sizes 1, 2, 4, ... up to it are measured")
    p.add_argument("--dist-backend", choices=["gloo", "nccl"], default=None,
                   help="torch.distributed backend (default: nccl for a CUDA backend, gloo on the CPU)")
    p.add_argument("--backend", default=None, help="the step's backend, e.g. cpu, cuda, cuda+amp-bf16 "
                   "(default: cuda with nccl, else cpu)")
    p.add_argument("--batch-size", type=positive_int, default=64,
                   help="samples per rank (weak scaling), or per step in all with --strong")
    p.add_argument("--strong", action="store_true", help="strong scaling: the global batch stays --batch-size")
    p.add_argument("--bucket-cap-mb", type=positive_float, default=None,
                   help="DDP's gradient bucket size in MiB (default: DDP's, 25)")
    p.add_argument("--static-graph", action="store_true", help="DDP's static_graph=True")
    p.add_argument("--sync-batchnorm", action="store_true",
                   help="convert BatchNorm to SyncBatchNorm (CUDA): statistics over the global batch")
    p.add_argument("--variant", dest="variants", type=variant_option, action="append", default=[],
                   metavar="WORKLOAD:OPTION=VALUE", help="a workload's variant; repeatable")
    p.add_argument("--nnodes", type=positive_int, default=1, help="nodes (run the same command on each)")
    p.add_argument("--node-rank", type=non_negative_int, default=None,
                   help="this node's rank, 0 to nnodes-1 (needed with --nnodes above 1)")
    p.add_argument("--rdzv-endpoint", default=None, metavar="HOST:PORT",
                   help="node 0's address and a free port (torchrun's static rendezvous; needed with --nnodes)")
    p.add_argument("--rdzv-timeout", type=positive_float, default=300.0, help="seconds to wait for the other nodes")
    p.add_argument("--iters", type=positive_int, default=20, help="timed steps per world size")
    p.add_argument("--warmup", type=non_negative_int, default=5, help="untimed steps before them")
    p.add_argument("--check-steps", type=positive_int, default=3, help="steps compared with single-process training")
    p.add_argument("--no-check", dest="check", action="store_false",
                   help="skip comparing the ranks' training with single-process training on the same global batch "
                        "(by default the first --check-steps steps are compared)")
    p.add_argument("--profile-steps", type=non_negative_int, default=3,
                   help="steps profiled for the all-reduce share (0: none)")
    p.add_argument("--timeout", type=positive_float, default=600.0,
                   help="seconds a rank may take before its watchdog stops the launch")
    p.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads per rank")
    p.add_argument("--seed", type=non_negative_int, default=0, help="the seed of the weights and batches")
    p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                   help="import MODULE first, in every rank too (it may register workloads); repeatable")
    p.add_argument("--out", type=path_option, default="results/ddp.jsonl",
                   help="JSONL file the records are appended to")
    table_options(p)
    p.set_defaults(func=cmd_ddp, going_on=starts_again("the records written so far are kept"))


@needs_torch
def cmd_ddp(args) -> int:
    from refbench.report.tables import DDP_COLUMNS, ddp_row
    from refbench.run.ddp import DDPConfig, run_ddp
    from refbench.run.runner import exit_code, summary_line

    config = DDPConfig(nproc=args.nproc, backend=args.backend, dist_backend=args.dist_backend,
                       batch_size=args.batch_size, strong=args.strong, bucket_cap_mb=args.bucket_cap_mb,
                       static_graph=args.static_graph, sync_batchnorm=args.sync_batchnorm,
                       variants=merged_variants(args.variants), nnodes=args.nnodes, node_rank=args.node_rank,
                       rdzv_endpoint=args.rdzv_endpoint, rdzv_timeout_s=args.rdzv_timeout, iters=args.iters,
                       warmup=args.warmup, check=args.check, check_steps=args.check_steps,
                       profile_steps=args.profile_steps, timeout_s=args.timeout, threads=args.threads,
                       seed=args.seed, imports=tuple(args.imports)).resolved()
    out = writable(args.out) if config.writes_records else None
    records = run_ddp(args.workloads, config, out, on_record=lambda r: print(
        f"{r['workload']} world size {r['variant']['world_size']}: {r['status']}"
        + (f" ({r['error'].splitlines()[0][:160]})" if r["error"] else ""), file=sys.stderr))
    if not config.writes_records:
        print(f"node {config.node_rank} done; node 0 writes the records")
        return 0
    print_table([ddp_row(r) for r in records], DDP_COLUMNS, args)
    print(f"{len(records)} records appended to {out}")
    print(summary_line(records, "run the same command again"))
    return exit_code(records)
