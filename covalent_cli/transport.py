"""``TransportableObject``: a pickled value with Covalent's accessors."""
from __future__ import annotations

import base64
import pickle
import platform
from typing import Any, Dict, Optional

import cloudpickle

_UNSET = object()


class TransportableObject:
    """A value kept in its pickled form; ``get_deserialized()`` gives the value back."""

    def __init__(self, obj: Any = None) -> None:
        self._bytes: Optional[bytes] = cloudpickle.dumps(obj)
        self._value: Any = obj
        self._repr: Optional[str] = None
        self.python_version = platform.python_version()

    @classmethod
    def from_pickle(cls, data: bytes) -> "TransportableObject":
        """Wrap bytes already pickled (decoded only when asked)."""
        self = cls.__new__(cls)
        self._bytes, self._value, self._repr = data, _UNSET, None
        self.python_version = platform.python_version()
        return self

    def get_deserialized(self) -> Any:
        """The value."""
        if self._value is _UNSET:
            self._value = pickle.loads(self._bytes)  # type: ignore[arg-type]
        return self._value

    def get_serialized(self) -> str:
        """The pickled value, base64-encoded (Covalent's wire form)."""
        return base64.b64encode(self._bytes or b"").decode()

    def to_dict(self) -> Dict[str, Any]:
        """Covalent's dict form: ``{"type": "TransportableObject", "attributes": {...}}``."""
        return {"type": "TransportableObject",
                "attributes": {"_object": self.get_serialized(),
                               "python_version": self.python_version,
                               "object_string": self.object_string}}

    @classmethod
    def from_dict(cls, object_dict: Dict[str, Any]) -> "TransportableObject":
        """The inverse of ``to_dict``."""
        attributes = object_dict["attributes"]
        self = cls.from_pickle(base64.b64decode(attributes["_object"]))
        self.python_version = attributes.get("python_version", self.python_version)
        return self

    def serialize(self) -> bytes:
        return pickle.dumps(self)

    @staticmethod
    def deserialize(data: bytes) -> "TransportableObject":
        return pickle.loads(data)

    @property
    def object_string(self) -> str:
        """``repr`` of the value."""
        if self._repr is None:
            try:
                self._repr = repr(self.get_deserialized())
            except Exception as exc:  # noqa: BLE001
                self._repr = f"<cannot load: {type(exc).__name__}: {exc}>"
        return self._repr

    def __getstate__(self):
        return {"bytes": self._bytes, "python_version": self.python_version}

    def __setstate__(self, state):
        self._bytes, self._value, self._repr = state["bytes"], _UNSET, None
        self.python_version = state.get("python_version", "")

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TransportableObject):
            return self._bytes == other._bytes
        return NotImplemented

    def __repr__(self) -> str:
        return f"TransportableObject({self.object_string})"
