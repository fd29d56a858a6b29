"""The scheduler's decisions apart from Ray: what is left per row, which shards the decode
window holds, which group a worker takes."""

from hrnet_eval.images import TABLE, Decoding
from hrnet_eval.plan import Shard
from hrnet_eval.policy import Work, choose_group, nonfinite_reason, row_groups
from hrnet_eval.window import DecodeWindow

A, B = "hrnet-w18", "hrnet-w48"
SHARDS = [(0, 4), (4, 8), (8, 12), (12, 16)]  # (start, end) of the shards
BICUBIC = Decoding(224, 256, "bicubic")  # timm's gluon rows


def work():
    return Work({Shard(*k): (A, B) if k != SHARDS[0] else (A,) for k in SHARDS})


def test_rows_are_sent_in_order_and_put_back_in_front():
    w = work()
    assert w.next_send([A, B], lambda key: True) == (Shard(0, 4), [A])
    w.take([A], Shard(0, 4))
    assert w.next_send([A, B], lambda key: True) == (Shard(4, 8), [A, B])  # one call, both rows
    w.take([A, B], Shard(4, 8))
    assert w.next_send([A, B], lambda key: key != Shard(8, 12)) is None  # head not open yet
    assert w.put_back([A, B], Shard(4, 8)) == 1  # its worker died: the first time
    assert w.todo[A][0] == Shard(4, 8) and w.todo[B][0] == Shard(4, 8) and w.needed(Shard(4, 8))


def test_a_stopped_row_is_neither_sent_nor_put_back():
    w = work()
    w.stop(B, "non-finite logits")
    assert not w.has(B) and w.waiting[Shard(12, 16)] == {A}
    w.put_back([A, B], Shard(0, 4))
    assert B not in w.todo and w.failed == {B: "non-finite logits"}


def test_window_wants_ready_rows_first_then_a_head_start():
    w = work()
    # A ready, B loading: A's shards first, B-only shards after (none here: B's are A's too).
    assert w.wanted({A}, {B}, size=2) == [Shard(0, 4), Shard(4, 8)]
    w.take([A], Shard(0, 4))
    w.take([A], Shard(4, 8))
    # Only B (loading) still needs (4, 8): it comes after A's next ones.
    assert w.wanted({A}, {B}, size=2) == [Shard(8, 12), Shard(12, 16), Shard(4, 8)]
    assert w.wanted(set(), {B}, size=2) == [Shard(4, 8), Shard(8, 12), Shard(12, 16)]


def test_window_evicts_what_only_loading_rows_want_and_counts_decoding_twice():
    opened = []
    window = DecodeWindow(2, lambda key: opened.append(key) or [key])
    window.update([Shard(0, 4), Shard(4, 8)], lambda key: True)
    assert set(window.refs) == {Shard(0, 4), Shard(4, 8)}
    window.update([Shard(4, 8), Shard(8, 12)], lambda key: True)  # full: (0, 4) makes room
    assert set(window.refs) == {Shard(4, 8), Shard(8, 12)} and window.decoded_twice == 0
    window.update([Shard(0, 4)], lambda key: key != Shard(8, 12))  # (8, 12) done; (0, 4) again
    assert set(window.refs) == {Shard(0, 4), Shard(4, 8)}
    assert opened == [Shard(0, 4), Shard(4, 8), Shard(8, 12), Shard(0, 4)]
    assert (window.decoded, window.decoded_twice) == (16, 4)


def test_groups_and_the_group_a_worker_takes():
    assert row_groups([A, B, "c"], 2) == [(A, B), ("c",)]
    w = work()
    flops = {A: 1, B: 10}
    groups = [(A,), (B,)]
    assert choose_group((), groups, [], w, flops) == (B,)  # most work left
    # work left: A 16 images x 1, B 12 images x 10, shared by the workers holding it
    assert choose_group((), groups, [(B,)] * 6, w, flops) == (B,)  # 120 / 7 > 16
    assert choose_group((), groups, [(B,)] * 7, w, flops) == (A,)  # 120 / 8 < 16
    assert choose_group((A,), groups, [], w, flops) == (A,)  # keeps its group while it has work
    w.stop(A, "x")
    assert choose_group((A,), groups, [], w, flops) == (B,)


def test_rows_of_another_decoding_wait_for_shards_of_their_own():
    c = "hrnet_w18_small.gluon_in1k"
    w = Work({Shard(0, 4, TABLE): (A,), Shard(0, 4, BICUBIC): (c,)})
    assert w.todo == {A: [Shard(0, 4, TABLE)], c: [Shard(0, 4, BICUBIC)]}
    assert w.wanted({A, c}, set(), size=4) == [Shard(0, 4, BICUBIC), Shard(0, 4, TABLE)]
    # one call per decoding: the rows of the earliest open shard's decoding only
    assert w.next_send([A, c], lambda key: True) == (Shard(0, 4, BICUBIC), [c])
    assert w.next_send([A, c], lambda key: key.decoding == TABLE) == (Shard(0, 4, TABLE), [A])
    assert str(Shard(0, 4, BICUBIC)) == "shard 00000000-00000004"


def test_a_shard_counts_the_workers_it_lost_and_names_nonfinite_images():
    w = work()
    assert [w.put_back([A], Shard(0, 4)) for _ in range(3)] == [1, 2, 3]
    why = nonfinite_reason(Shard(0, 4), ["a.JPEG", "b.JPEG", "c.JPEG", "d.JPEG"])
    assert why.startswith("non-finite logits (NaN or inf) in shard 00000000-00000004, images ")
    assert "a.JPEG, b.JPEG, c.JPEG and 1 more" in why


def test_shards_rows_still_loading_need_stay_decoded_while_they_fit():
    """A scores every shard while B compiles; B, ready after, decodes nothing again."""
    for hold, twice in ((16, 0), (8, 4)):
        w, opened = work(), []
        window = DecodeWindow(1, lambda key: opened.append(key) or [key], hold=hold)
        while w.has(A):  # A ready, B loading: one shard ahead, sent as soon as it is open
            window.update(w.wanted({A}, {B}, window.size), w.needed)
            key, rows = w.next_send([A], lambda key: key in window)
            w.take(rows, key)
        # B needs 3 of the 4 shards (12 images): all held under 16; under 8, (8, 12) made
        # room for (12, 16), which A needed then
        held = {Shard(4, 8), Shard(8, 12), Shard(12, 16)} - ({Shard(8, 12)} if twice else set())
        assert set(window.refs) == held
        while w.has(B):
            window.update(w.wanted({A, B}, set(), window.size), w.needed)
            key, rows = w.next_send([A, B], lambda key: key in window)
            w.take(rows, key)
        assert window.decoded_twice == twice and window.decoded == 16 + twice
        window.update(w.wanted({A, B}, set(), window.size), w.needed)
        assert not window.refs  # nobody needs anything: all closed


def test_a_worker_takes_the_shards_decoded_on_its_node_first():
    w = work()
    here = {Shard(8, 12), Shard(12, 16)}  # the others were decoded on another node
    assert w.next_here([A, B], lambda key: key in here) == (Shard(8, 12), [A, B])
    w.take([A], Shard(8, 12))
    assert w.next_here([A, B], lambda key: key in here) == (Shard(8, 12), [B])
    w.stop(B, "broken")
    assert w.next_here([A, B], lambda key: key in here) == (Shard(12, 16), [A])
    assert w.next_here([A], lambda key: False) is None


def test_shards_are_placed_where_ready_workers_have_the_least_waiting():
    from types import SimpleNamespace

    from hrnet_eval.scheduler import Pool

    pool = Pool(None, SimpleNamespace(workers=3), {}, work(), [], None, print)
    assert pool.place({}) is None  # no worker said where it runs yet
    for slot, node in zip(pool.slots, ("a", "a", "b")):
        slot.node = (node, "127.0.0.1")
    assert {pool.place({}) for _ in range(4)} == {"a", "b"}  # in turn on a tie
    assert pool.place({"a": 1, "b": 1}) == "a"  # per worker: a has two workers
    assert pool.place({"a": 4, "b": 1}) == "b"
    pool.slots[2].loaded.add(A)  # only b's worker has a row ready: b, whatever waits there
    assert pool.place({"b": 5}) == "b"
