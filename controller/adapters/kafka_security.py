"""How pipectl authenticates to a Kafka cluster: the librdkafka settings of an Environment's
``kafka`` security block (``controller.model.endpoints.KafkaEndpoint``), without the SDK."""

from __future__ import annotations

from dataclasses import dataclass

from controller.model.secret import Secret


@dataclass(frozen=True)
class KafkaSecurity:
    """How pipectl authenticates to a cluster (an Environment's ``kafka`` security settings,
    ``controller.model.endpoints.KafkaEndpoint``). ``password`` is a ``Secret``: the repr of this
    object, of the adapter and of its errors never shows it."""

    protocol: str = "PLAINTEXT"
    mechanism: str | None = None
    username: str | None = None
    password: Secret | None = None
    ca_file: str | None = None

    def client_config(self) -> dict[str, str]:
        """librdkafka settings (the only place the password is revealed: to the client itself)."""
        conf = {"security.protocol": self.protocol}
        if self.protocol.startswith("SASL_"):
            if not (self.mechanism and self.username and self.password):
                raise ValueError(f"security protocol {self.protocol} needs a SASL mechanism, user, password")
            conf.update(
                {
                    "sasl.mechanism": self.mechanism,
                    "sasl.username": self.username,
                    "sasl.password": self.password.reveal(),
                }
            )
        if self.ca_file:
            conf["ssl.ca.location"] = self.ca_file
        return conf
