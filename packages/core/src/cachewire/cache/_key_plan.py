"""Key plans: a cached function's keys, built by a function prepared once at decoration.

The plan compiles a small function with the cached function's own parameters (names, kinds and
default objects), so Python itself binds each call, defaults included, and raises the usual
`TypeError` for a call the function would refuse. Its body encodes each value the way the key
policy does: values of the plain types (``str``, ``int``, ``bool``, ``None``) are encoded by
`encode_value` once and remembered, every other value goes to `encode_value` on every call, and
a key longer than the policy allows is left to `encode_key`. The result is `encode_key`'s key for
the bound arguments; a plan that disagrees with `encode_key` on probe values at decoration is not
used (the function then binds with `inspect` and calls `encode_key` on every call).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from cachewire.cache._keys import MAX_KEY_LENGTH, encode_key, encode_value

__all__ = ["MEMO_ENTRIES", "KeyPlan"]

#: How many plain values a plan remembers the encoding of (per type), and the longest str.
MEMO_ENTRIES = 2048
MEMO_TEXT_LENGTH = 64
#: Values whose keys a new plan must reproduce exactly before it is used.
_PROBES: tuple[Any, ...] = (None, True, False, 0, -7, 12345, "", "plain", "a b|~%=:*", "é\n", 1.5)
_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
_LOCAL = "_cw_"  # the generated code's own names start with this; no parameter's may


def _same(value: Any) -> Any:
    return value


class KeyPlan:
    """How one function's calls become cache keys (see the module docstring).

    ``key_of(*args, **kwargs)`` gives ``(key, tags)``: the call's key, and its entry's tags:
    ``function_tag``, then with a ``partition`` the partition's tag (``partition_prefix`` and the
    encodings of the partition parameters' values, in the order given; one tuple per partition,
    shared). A method's ``receiver`` (``self``) is left out of the key, or replaced by
    ``self_key(receiver)``. ``key_of`` is None when the plan is not usable (``*args`` /
    ``**kwargs`` parameters, a parameter name of the generated code's own, or keys that differ
    from `encode_key`'s).
    """

    def __init__(
        self,
        prefix: str,
        signature: inspect.Signature,
        *,
        function_tag: str,
        partition: tuple[str, ...] = (),
        partition_prefix: str = "",
        receiver: str | None = None,
        self_key: Callable[[Any], Any] | None = None,
    ) -> None:
        self.prefix = prefix
        self.signature = signature
        self._receiver = receiver
        self._self_key = self_key
        #: The parameters the key holds: a method's receiver only through ``self_key``.
        self.names = tuple(
            name for name in signature.parameters if name != receiver or self_key is not None
        )
        self._function_tag = function_tag
        self._partition = partition
        self._partition_prefix = partition_prefix
        self._shared_tags: dict[str, tuple[str, str]] = {}
        self._texts: dict[str, str] = {}
        self._ints: dict[int, str] = {}
        self.key_of: Callable[..., tuple[str, tuple[str, ...]]] | None = None
        parameters = signature.parameters.values()
        if any(p.kind in _VARIADIC or p.name.startswith(_LOCAL) for p in parameters):
            return
        try:
            key_of = self._compile()
            fits = self._agrees_with_policy(key_of)
        except Exception:
            fits = False
        finally:
            self._texts.clear()
            self._ints.clear()
            self._shared_tags.clear()
        if fits:
            self.key_of = key_of

    # ---------------------------------------------------------------- building

    def _labels(self) -> dict[str, str]:
        """What precedes each parameter's encoded value in a key, taken from `encode_key`."""
        head = encode_key(self.prefix, {})
        none = encode_value(None)
        labels = {}
        for name in self.names:
            whole = encode_key(self.prefix, {name: None})
            label = whole[len(head) : len(whole) - len(none)]
            if whole != head + label + none:
                raise ValueError(f"a key of one argument is not head + label + value: {whole!r}")
            labels[name] = label
        return labels

    def partition_tags(self, partition_tag: str) -> tuple[str, str]:
        """The tags of an entry of this partition: one tuple per partition (a bounded memo)."""
        tags = self._shared_tags.get(partition_tag)
        if tags is None:
            if len(self._shared_tags) >= MEMO_ENTRIES:
                self._shared_tags.clear()
            tags = self._shared_tags[partition_tag] = (self._function_tag, partition_tag)
        return tags

    def _compile(self) -> Callable[..., tuple[str, tuple[str, ...]]]:
        labels = self._labels()
        namespace: dict[str, Any] = {
            f"{_LOCAL}head": encode_key(self.prefix, {}),
            f"{_LOCAL}texts": self._texts,
            f"{_LOCAL}ints": self._ints,
            f"{_LOCAL}remember": self._remember,
            f"{_LOCAL}encode": encode_value,
            f"{_LOCAL}long": self._long_key,
            f"{_LOCAL}max": MAX_KEY_LENGTH,
            f"{_LOCAL}none": encode_value(None),
            f"{_LOCAL}true": encode_value(True),
            f"{_LOCAL}false": encode_value(False),
            f"{_LOCAL}type": type,
            f"{_LOCAL}len": len,
            f"{_LOCAL}str": str,
            f"{_LOCAL}int": int,
            f"{_LOCAL}function_tags": (self._function_tag,),
            f"{_LOCAL}partition_prefix": self._partition_prefix,
            f"{_LOCAL}shared_tags": self._shared_tags,
            f"{_LOCAL}partition_tags": self.partition_tags,
            f"{_LOCAL}self_key": self._self_key,
        }
        self._namespace = namespace
        head, body = [], []
        star_written = False
        parameters = list(self.signature.parameters.values())
        for index, parameter in enumerate(parameters):
            name = parameter.name
            if parameter.kind is parameter.KEYWORD_ONLY and not star_written:
                head.append("*")
                star_written = True
            if parameter.default is parameter.empty:
                head.append(name)
            else:
                namespace[f"{_LOCAL}default{index}"] = parameter.default
                head.append(f"{name}={_LOCAL}default{index}")
            following = parameters[index + 1].kind if index + 1 < len(parameters) else None
            if parameter.kind is parameter.POSITIONAL_ONLY and following is not (
                parameter.POSITIONAL_ONLY
            ):
                head.append("/")
            if name not in labels:
                continue  # the receiver of a method, not part of the key
            if name == self._receiver:
                body.append(f"    {name} = {_LOCAL}self_key({name})")
            namespace[f"{_LOCAL}where{index}"] = f"{self.prefix} argument {name!r}"
            namespace[f"{_LOCAL}label{index}"] = labels[name]
            code = f"{_LOCAL}c{index}"
            body += [
                f"    {_LOCAL}kind = {_LOCAL}type({name})",
                f"    if {_LOCAL}kind is {_LOCAL}str:",
                f"        {code} = {_LOCAL}texts.get({name}) or "
                f"{_LOCAL}remember({_LOCAL}texts, {name}, {_LOCAL}where{index})",
                f"    elif {_LOCAL}kind is {_LOCAL}int:",
                f"        {code} = {_LOCAL}ints.get({name}) or "
                f"{_LOCAL}remember({_LOCAL}ints, {name}, {_LOCAL}where{index})",
                f"    elif {name} is None:",
                f"        {code} = {_LOCAL}none",
                f"    elif {name} is True:",
                f"        {code} = {_LOCAL}true",
                f"    elif {name} is False:",
                f"        {code} = {_LOCAL}false",
                "    else:",
                f"        {code} = {_LOCAL}encode({name}, where={_LOCAL}where{index})",
            ]
        index_of = {name: index for index, name in enumerate(self.signature.parameters)}
        by_name = sorted(self.names)  # encode_key orders the arguments by name
        pieces = [f"{_LOCAL}head"] + [
            f"{_LOCAL}label{index_of[n]} + {_LOCAL}c{index_of[n]}" for n in by_name
        ]
        if self._partition:
            codes = " + ".join(f"{_LOCAL}c{index_of[n]}" for n in self._partition)
            tags = [
                f"    {_LOCAL}tag = {_LOCAL}partition_prefix + {codes}",
                f"    return {_LOCAL}key, ({_LOCAL}shared_tags.get({_LOCAL}tag) or "
                f"{_LOCAL}partition_tags({_LOCAL}tag))",
            ]
        else:
            tags = [f"    return {_LOCAL}key, {_LOCAL}function_tags"]
        key_arguments = ", ".join(self.names)
        body += [
            f"    {_LOCAL}key = {' + '.join(pieces)}",
            f"    if {_LOCAL}len({_LOCAL}key) > {_LOCAL}max:",
            f"        {_LOCAL}key = {_LOCAL}long({key_arguments})",
            *tags,
        ]
        source = f"def {_LOCAL}key_of({', '.join(head)}):\n" + "\n".join(body) + "\n"
        exec(compile(source, f"<cachewire key plan of {self.prefix}>", "exec"), namespace)
        key_of: Callable[..., tuple[str, tuple[str, ...]]] = namespace[f"{_LOCAL}key_of"]
        return key_of

    def _agrees_with_policy(self, key_of: Callable[..., tuple[str, tuple[str, ...]]]) -> bool:
        """Whether ``key_of`` gives `encode_key`'s keys (and the tags) on probe values.

        The probes stand for a method's receiver too: ``self_key`` is left out meanwhile.
        """
        self._namespace[f"{_LOCAL}self_key"] = _same
        try:
            return self._probe(key_of)
        finally:
            self._namespace[f"{_LOCAL}self_key"] = self._self_key

    def _probe(self, key_of: Callable[..., tuple[str, tuple[str, ...]]]) -> bool:
        parameters = list(self.signature.parameters.values())
        for shift in range(len(_PROBES)):
            values = {p.name: _PROBES[(shift + i) % len(_PROBES)] for i, p in enumerate(parameters)}
            positional = [values[p.name] for p in parameters if p.kind is not p.KEYWORD_ONLY]
            by_keyword = {p.name: values[p.name] for p in parameters if p.kind is p.KEYWORD_ONLY}
            key, tags = key_of(*positional, **by_keyword)
            expected: tuple[str, ...] = (self._function_tag,)
            if self._partition:
                codes = "".join(encode_value(values[name]) for name in self._partition)
                expected += (self._partition_prefix + codes,)
            in_key = {name: values[name] for name in self.names}
            if key != encode_key(self.prefix, in_key) or tags != expected:
                return False
        return True

    # ---------------------------------------------------------------- per call

    def _remember(self, memo: dict[Any, str], value: Any, where: str) -> str:
        """The policy's encoding of a plain value, remembered (a bounded memo)."""
        code = encode_value(value, where=where)
        if not isinstance(value, str) or len(value) <= MEMO_TEXT_LENGTH:
            if len(memo) >= MEMO_ENTRIES:
                memo.clear()
            memo[value] = code
        return code

    def _long_key(self, *values: Any) -> str:
        return encode_key(self.prefix, dict(zip(self.names, values, strict=True)))
