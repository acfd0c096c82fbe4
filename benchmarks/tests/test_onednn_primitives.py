"""benchmarks/onednn_primitives.py reads oneDNN's verbose log right (hand-made lines in its format)."""
from benchmarks import onednn_primitives as op

LOG = "\n".join([
    "onednn_verbose,v1,info,oneDNN v3.9.0",
    "onednn_verbose,v1,primitive,info,template:operation,engine,primitive,implementation,prop_kind,x,y,z,problem_desc,exec_time",
    "onednn_verbose,v1,primitive,create:cache_miss,cpu,matmul,brg_matmul:avx10_1_512_amx,undef,src:bf16 wei:bf16,,,53x1024:1024x1024,2.5",
    "onednn_verbose,v1,primitive,exec,cpu,matmul,brg_matmul:avx10_1_512_amx,undef,src:bf16 wei:bf16,,,53x1024:1024x1024,0.5",
    "onednn_verbose,v1,primitive,create:cache_hit,cpu,matmul,brg_matmul:avx10_1_512_amx,undef,src:bf16 wei:bf16,,,53x1024:1024x1024,0.01",
    "onednn_verbose,v1,primitive,exec,cpu,matmul,brg_matmul:avx10_1_512_amx,undef,src:bf16 wei:bf16,,,53x1024:1024x1024,0.25",
    "onednn_verbose,v1,primitive,create:cache_miss,cpu,eltwise,jit:avx512,forward_training,data:bf16,,alg:eltwise_gelu,61x1024,1.5",
    "onednn_verbose,v1,primitive,exec,cpu,eltwise,jit:avx512,forward_training,data:bf16,,alg:eltwise_gelu,61x1024,0.125",
    "onednn_verbose,v1,graph,exec,cpu,1,sdp,,,,,0.3",  # graph API lines are not primitives
    "some other output line",
])


def test_counts_and_milliseconds_from_a_hand_made_log():
    r = op.parse_log(LOG)
    assert r == {"creates_missed": 2, "creates_hit": 1, "create_missed_ms": 4.0, "executions": 3, "exec_ms": 0.9,
                 "distinct_primitives": 2}
