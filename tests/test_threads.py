"""USE_UNIQUE_THREAD=0: threads serving one model with different active adapters see only their own."""
import threading

import pytest
import torch

from swiftlite import LoRAConfig, Swift
from swiftlite.testing import models, output_tensor

ADAPTERS = ("a", "b", "c")


def _model():
    model, inputs = models.mlp()
    sm = Swift.prepare_model(model, {name: LoRAConfig(target_modules=["fc1", "fc2"], init_lora_weights=False)
                                     for name in ADAPTERS})
    return sm, inputs


def _out(model, inputs):
    with torch.no_grad():
        return output_tensor(model(**inputs))


def _references(sm, inputs):
    refs = {}
    for name in ADAPTERS:
        sm.set_active_adapters(name)
        refs[name] = _out(sm, inputs)
    with sm.disable_adapter():
        refs[None] = _out(sm, inputs)
    for a, b in [("a", "b"), ("a", "c"), ("b", "c"), ("a", None)]:
        assert not torch.allclose(refs[a], refs[b])  # the adapters really differ
    return refs


def test_threads_with_different_adapters_match_single_threaded_outputs(monkeypatch):
    monkeypatch.setenv("USE_UNIQUE_THREAD", "0")
    sm, inputs = _model()
    refs = _references(sm, inputs)
    sm.set_active_adapters(list(ADAPTERS))  # the process-wide state: all three
    n_threads, iterations = 6, 40
    barrier = threading.Barrier(n_threads)
    errors, mismatches = [], []

    def serve(i):
        try:
            barrier.wait()
            for step in range(iterations):
                name = ADAPTERS[(i + step) % len(ADAPTERS)] if i % 3 else ADAPTERS[i % len(ADAPTERS)]
                sm.set_active_adapters(name)  # this thread only
                y = _out(sm, inputs)
                if not torch.allclose(y, refs[name], rtol=1e-5, atol=1e-6):
                    mismatches.append((i, step, name))
        except Exception as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=serve, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and not mismatches, (errors, mismatches[:5])
    assert sorted(sm.active_adapters) == sorted(ADAPTERS)  # the main thread's state is untouched


def test_a_new_thread_does_not_inherit_a_finished_threads_choice(monkeypatch):
    """Thread ids are reused after a thread ends: a fresh thread must see the process-wide state."""
    monkeypatch.setenv("USE_UNIQUE_THREAD", "0")
    sm, inputs = _model()
    refs = _references(sm, inputs)
    sm.set_active_adapters("a")
    for _ in range(20):
        chooser = threading.Thread(target=lambda: sm.set_active_adapters("b"))
        chooser.start()
        chooser.join()
        seen = []
        reader = threading.Thread(target=lambda: seen.append(_out(sm, inputs)))
        reader.start()
        reader.join()
        torch.testing.assert_close(seen[0], refs["a"])


@pytest.mark.parametrize("unique", ["1", None])
def test_process_wide_activation_by_default(monkeypatch, unique):
    if unique is None:
        monkeypatch.delenv("USE_UNIQUE_THREAD", raising=False)
    else:
        monkeypatch.setenv("USE_UNIQUE_THREAD", unique)
    sm, inputs = _model()
    refs = _references(sm, inputs)
    t = threading.Thread(target=lambda: sm.set_active_adapters("c"))
    t.start()
    t.join()
    torch.testing.assert_close(_out(sm, inputs), refs["c"])  # one state for the whole process
