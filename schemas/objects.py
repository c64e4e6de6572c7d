"""References to Kubernetes objects and the status conditions quoted as evidence."""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class ObjectRef(BaseModel):
    """Which object an event is about, as observed (resourceVersion is the one judged)."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    kind: str = Field(min_length=1)
    api_version: str = Field(alias="apiVersion", min_length=1)
    namespace: str | None = None
    name: str = Field(min_length=1)
    uid: str = ""
    resource_version: str = Field(default="", alias="resourceVersion")

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]

    def display(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"


class Condition(BaseModel):
    """A status condition as Kubernetes writes it (metav1.Condition)."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    type: str
    status: str
    reason: str = ""
    message: str = ""
    last_transition_time: AwareDatetime | None = Field(default=None, alias="lastTransitionTime")
    observed_generation: int | None = Field(default=None, alias="observedGeneration")
