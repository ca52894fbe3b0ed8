from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FaceDetection(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FACE_DETECTION_UNSPECIFIED: _ClassVar[FaceDetection]
    FACE_DETECTION_AUTO: _ClassVar[FaceDetection]
    FACE_DETECTION_ON: _ClassVar[FaceDetection]
    FACE_DETECTION_OFF: _ClassVar[FaceDetection]

class Label(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LABEL_UNSPECIFIED: _ClassVar[Label]
    LABEL_REAL: _ClassVar[Label]
    LABEL_FAKE: _ClassVar[Label]
    LABEL_UNCERTAIN: _ClassVar[Label]
FACE_DETECTION_UNSPECIFIED: FaceDetection
FACE_DETECTION_AUTO: FaceDetection
FACE_DETECTION_ON: FaceDetection
FACE_DETECTION_OFF: FaceDetection
LABEL_UNSPECIFIED: Label
LABEL_REAL: Label
LABEL_FAKE: Label
LABEL_UNCERTAIN: Label

class ClassifyOptions(_message.Message):
    __slots__ = ("face_detection", "want_heatmaps", "source")
    FACE_DETECTION_FIELD_NUMBER: _ClassVar[int]
    WANT_HEATMAPS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    face_detection: FaceDetection
    want_heatmaps: bool
    source: str
    def __init__(self, face_detection: _Optional[_Union[FaceDetection, str]] = ..., want_heatmaps: _Optional[bool] = ..., source: _Optional[str] = ...) -> None: ...

class ClassifyRequest(_message.Message):
    __slots__ = ("image", "options", "sequence_id")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_ID_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    options: ClassifyOptions
    sequence_id: int
    def __init__(self, image: _Optional[bytes] = ..., options: _Optional[_Union[ClassifyOptions, _Mapping]] = ..., sequence_id: _Optional[int] = ...) -> None: ...

class Box(_message.Message):
    __slots__ = ("x", "y", "width", "height")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    x: float
    y: float
    width: float
    height: float
    def __init__(self, x: _Optional[float] = ..., y: _Optional[float] = ..., width: _Optional[float] = ..., height: _Optional[float] = ...) -> None: ...

class Point(_message.Message):
    __slots__ = ("x", "y")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    x: float
    y: float
    def __init__(self, x: _Optional[float] = ..., y: _Optional[float] = ...) -> None: ...

class Vote(_message.Message):
    __slots__ = ("agent", "p_fake", "weight", "latency_ms", "model_sha", "context_shift")
    AGENT_FIELD_NUMBER: _ClassVar[int]
    P_FAKE_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    MODEL_SHA_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_SHIFT_FIELD_NUMBER: _ClassVar[int]
    agent: str
    p_fake: float
    weight: float
    latency_ms: float
    model_sha: str
    context_shift: float
    def __init__(self, agent: _Optional[str] = ..., p_fake: _Optional[float] = ..., weight: _Optional[float] = ..., latency_ms: _Optional[float] = ..., model_sha: _Optional[str] = ..., context_shift: _Optional[float] = ...) -> None: ...

class Heatmap(_message.Message):
    __slots__ = ("agent", "png", "withheld")
    AGENT_FIELD_NUMBER: _ClassVar[int]
    PNG_FIELD_NUMBER: _ClassVar[int]
    WITHHELD_FIELD_NUMBER: _ClassVar[int]
    agent: str
    png: bytes
    withheld: str
    def __init__(self, agent: _Optional[str] = ..., png: _Optional[bytes] = ..., withheld: _Optional[str] = ...) -> None: ...

class Face(_message.Message):
    __slots__ = ("index", "box", "landmarks", "label", "p_fake", "threshold", "votes", "degraded", "missing_agents", "detector_confidence", "heatmaps", "combiner", "uncertain_reason", "ood_score", "context")
    class ContextEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    INDEX_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    LANDMARKS_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    P_FAKE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    VOTES_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    MISSING_AGENTS_FIELD_NUMBER: _ClassVar[int]
    DETECTOR_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    HEATMAPS_FIELD_NUMBER: _ClassVar[int]
    COMBINER_FIELD_NUMBER: _ClassVar[int]
    UNCERTAIN_REASON_FIELD_NUMBER: _ClassVar[int]
    OOD_SCORE_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    index: int
    box: Box
    landmarks: _containers.RepeatedCompositeFieldContainer[Point]
    label: Label
    p_fake: float
    threshold: float
    votes: _containers.RepeatedCompositeFieldContainer[Vote]
    degraded: bool
    missing_agents: _containers.RepeatedScalarFieldContainer[str]
    detector_confidence: float
    heatmaps: _containers.RepeatedCompositeFieldContainer[Heatmap]
    combiner: str
    uncertain_reason: str
    ood_score: float
    context: _containers.ScalarMap[str, float]
    def __init__(self, index: _Optional[int] = ..., box: _Optional[_Union[Box, _Mapping]] = ..., landmarks: _Optional[_Iterable[_Union[Point, _Mapping]]] = ..., label: _Optional[_Union[Label, str]] = ..., p_fake: _Optional[float] = ..., threshold: _Optional[float] = ..., votes: _Optional[_Iterable[_Union[Vote, _Mapping]]] = ..., degraded: _Optional[bool] = ..., missing_agents: _Optional[_Iterable[str]] = ..., detector_confidence: _Optional[float] = ..., heatmaps: _Optional[_Iterable[_Union[Heatmap, _Mapping]]] = ..., combiner: _Optional[str] = ..., uncertain_reason: _Optional[str] = ..., ood_score: _Optional[float] = ..., context: _Optional[_Mapping[str, float]] = ...) -> None: ...

class ClassifyResponse(_message.Message):
    __slots__ = ("request_id", "bundle_version", "controller_version", "timings_ms", "faces", "no_face_reason", "sequence_id", "source", "image_width", "image_height", "error_code", "error_message")
    class TimingsMsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_VERSION_FIELD_NUMBER: _ClassVar[int]
    CONTROLLER_VERSION_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_MS_FIELD_NUMBER: _ClassVar[int]
    FACES_FIELD_NUMBER: _ClassVar[int]
    NO_FACE_REASON_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_WIDTH_FIELD_NUMBER: _ClassVar[int]
    IMAGE_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    bundle_version: str
    controller_version: str
    timings_ms: _containers.ScalarMap[str, float]
    faces: _containers.RepeatedCompositeFieldContainer[Face]
    no_face_reason: str
    sequence_id: int
    source: str
    image_width: int
    image_height: int
    error_code: str
    error_message: str
    def __init__(self, request_id: _Optional[str] = ..., bundle_version: _Optional[str] = ..., controller_version: _Optional[str] = ..., timings_ms: _Optional[_Mapping[str, float]] = ..., faces: _Optional[_Iterable[_Union[Face, _Mapping]]] = ..., no_face_reason: _Optional[str] = ..., sequence_id: _Optional[int] = ..., source: _Optional[str] = ..., image_width: _Optional[int] = ..., image_height: _Optional[int] = ..., error_code: _Optional[str] = ..., error_message: _Optional[str] = ...) -> None: ...

class FeedbackRequest(_message.Message):
    __slots__ = ("request_id", "label", "face_index")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    FACE_INDEX_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    label: Label
    face_index: int
    def __init__(self, request_id: _Optional[str] = ..., label: _Optional[_Union[Label, str]] = ..., face_index: _Optional[int] = ...) -> None: ...

class FeedbackResponse(_message.Message):
    __slots__ = ("stored", "controller_version", "previous_controller_version", "applied", "detail")
    STORED_FIELD_NUMBER: _ClassVar[int]
    CONTROLLER_VERSION_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_CONTROLLER_VERSION_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    stored: bool
    controller_version: str
    previous_controller_version: str
    applied: bool
    detail: str
    def __init__(self, stored: _Optional[bool] = ..., controller_version: _Optional[str] = ..., previous_controller_version: _Optional[str] = ..., applied: _Optional[bool] = ..., detail: _Optional[str] = ...) -> None: ...

class GetModelInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AgentInfo(_message.Message):
    __slots__ = ("name", "model_sha", "threshold", "temperature", "input_height", "input_width", "input_channels", "input_scale", "bias")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_SHA_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    INPUT_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    INPUT_WIDTH_FIELD_NUMBER: _ClassVar[int]
    INPUT_CHANNELS_FIELD_NUMBER: _ClassVar[int]
    INPUT_SCALE_FIELD_NUMBER: _ClassVar[int]
    BIAS_FIELD_NUMBER: _ClassVar[int]
    name: str
    model_sha: str
    threshold: float
    temperature: float
    input_height: int
    input_width: int
    input_channels: int
    input_scale: str
    bias: float
    def __init__(self, name: _Optional[str] = ..., model_sha: _Optional[str] = ..., threshold: _Optional[float] = ..., temperature: _Optional[float] = ..., input_height: _Optional[int] = ..., input_width: _Optional[int] = ..., input_channels: _Optional[int] = ..., input_scale: _Optional[str] = ..., bias: _Optional[float] = ...) -> None: ...

class TrustEntry(_message.Message):
    __slots__ = ("agent", "weights")
    class WeightsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    AGENT_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    agent: str
    weights: _containers.ScalarMap[str, float]
    def __init__(self, agent: _Optional[str] = ..., weights: _Optional[_Mapping[str, float]] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("bundle_version", "controller_version", "manifest_json", "agents", "trust", "thresholds", "info_json", "feedback_records")
    class ThresholdsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    BUNDLE_VERSION_FIELD_NUMBER: _ClassVar[int]
    CONTROLLER_VERSION_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_JSON_FIELD_NUMBER: _ClassVar[int]
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    TRUST_FIELD_NUMBER: _ClassVar[int]
    THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    INFO_JSON_FIELD_NUMBER: _ClassVar[int]
    FEEDBACK_RECORDS_FIELD_NUMBER: _ClassVar[int]
    bundle_version: str
    controller_version: str
    manifest_json: str
    agents: _containers.RepeatedCompositeFieldContainer[AgentInfo]
    trust: _containers.RepeatedCompositeFieldContainer[TrustEntry]
    thresholds: _containers.ScalarMap[str, float]
    info_json: str
    feedback_records: int
    def __init__(self, bundle_version: _Optional[str] = ..., controller_version: _Optional[str] = ..., manifest_json: _Optional[str] = ..., agents: _Optional[_Iterable[_Union[AgentInfo, _Mapping]]] = ..., trust: _Optional[_Iterable[_Union[TrustEntry, _Mapping]]] = ..., thresholds: _Optional[_Mapping[str, float]] = ..., info_json: _Optional[str] = ..., feedback_records: _Optional[int] = ...) -> None: ...
