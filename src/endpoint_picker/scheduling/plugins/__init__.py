"""Upstream's in-tree scheduling plugins, by type name (see ``PLUGIN_CLASSES``)."""

from endpoint_picker.scheduling.plugins.admitter import ProbabilisticAdmitter
from endpoint_picker.scheduling.plugins.bylabel import ByLabelFilter
from endpoint_picker.scheduling.plugins.dataparallel import DataParallelProfileHandler
from endpoint_picker.scheduling.plugins.deciders import (
    AlwaysDisaggMultimodalDecider,
    AlwaysDisaggPDDecider,
    PrefixBasedPDDecider,
)
from endpoint_picker.scheduling.plugins.disagg import DisaggProfileHandler
from endpoint_picker.scheduling.plugins.disagg_legacy import (
    DisaggHeadersHandler,
    PdProfileHandler,
    PrefillHeaderHandler,
)
from endpoint_picker.scheduling.plugins.filters import HeaderBasedTestingFilter, SaturationFilter
from endpoint_picker.scheduling.plugins.handlers import (
    DestinationEndpointServedVerifier,
    SingleProfileHandler,
)
from endpoint_picker.scheduling.plugins.llmd import (
    ActiveRequestScorer,
    EndpointNotificationSource,
    LoadAwareScorer,
    NoHitLruScorer,
)
from endpoint_picker.scheduling.plugins.pickers import (
    MaxScorePicker,
    RandomPicker,
    WeightedRandomPicker,
)
from endpoint_picker.scheduling.plugins.precise import PrecisePrefixCacheProducer
from endpoint_picker.scheduling.plugins.prefix import ApproxPrefixCacheProducer, PrefixCacheScorer
from endpoint_picker.scheduling.plugins.reporter import RequestAttributeReporter
from endpoint_picker.scheduling.plugins.roles import (
    DecodeFilter,
    EncodeFilter,
    LabelSelectorFilter,
    PrefillFilter,
)
from endpoint_picker.scheduling.plugins.scorers import (
    KVCacheUtilizationScorer,
    LoraAffinityScorer,
    QueueScorer,
    RunningRequestsSizeScorer,
    TokenLoadScorer,
)
from endpoint_picker.scheduling.plugins.session import SessionAffinityScorer
from endpoint_picker.scheduling.plugins.token_producer import TokenProducer

PLUGIN_CLASSES = {
    cls.type_name: cls
    for cls in (
        QueueScorer,
        KVCacheUtilizationScorer,
        RunningRequestsSizeScorer,
        LoraAffinityScorer,
        TokenLoadScorer,
        PrefixCacheScorer,
        ApproxPrefixCacheProducer,
        MaxScorePicker,
        RandomPicker,
        WeightedRandomPicker,
        SingleProfileHandler,
        HeaderBasedTestingFilter,
        DestinationEndpointServedVerifier,
        TokenProducer,
        PrecisePrefixCacheProducer,
        NoHitLruScorer,
        ActiveRequestScorer,
        EndpointNotificationSource,
        DecodeFilter,
        PrefillFilter,
        EncodeFilter,
        LabelSelectorFilter,
        DisaggProfileHandler,
        PdProfileHandler,
        DisaggHeadersHandler,
        PrefillHeaderHandler,
        PrefixBasedPDDecider,
        AlwaysDisaggPDDecider,
        AlwaysDisaggMultimodalDecider,
        DataParallelProfileHandler,
        LoadAwareScorer,
        ProbabilisticAdmitter,
        SessionAffinityScorer,
        RequestAttributeReporter,
        ByLabelFilter,
    )
}
"""Type name -> class; each class has ``from_params(name, params)``."""

__all__ = [
    "PLUGIN_CLASSES",
    "ActiveRequestScorer",
    "AlwaysDisaggMultimodalDecider",
    "AlwaysDisaggPDDecider",
    "ApproxPrefixCacheProducer",
    "ByLabelFilter",
    "DataParallelProfileHandler",
    "DecodeFilter",
    "DestinationEndpointServedVerifier",
    "DisaggHeadersHandler",
    "DisaggProfileHandler",
    "EncodeFilter",
    "EndpointNotificationSource",
    "HeaderBasedTestingFilter",
    "KVCacheUtilizationScorer",
    "LabelSelectorFilter",
    "LoadAwareScorer",
    "LoraAffinityScorer",
    "MaxScorePicker",
    "NoHitLruScorer",
    "PdProfileHandler",
    "PrecisePrefixCacheProducer",
    "PrefillFilter",
    "PrefillHeaderHandler",
    "PrefixBasedPDDecider",
    "PrefixCacheScorer",
    "ProbabilisticAdmitter",
    "QueueScorer",
    "RandomPicker",
    "RequestAttributeReporter",
    "RunningRequestsSizeScorer",
    "SaturationFilter",
    "SessionAffinityScorer",
    "SingleProfileHandler",
    "TokenLoadScorer",
    "TokenProducer",
    "WeightedRandomPicker",
]
