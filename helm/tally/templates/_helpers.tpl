{{- define "tally.env" -}}
- {name: TALLY_KAFKA_BROKERS, value: {{ .Values.kafka.brokers | quote }}}
- {name: TALLY_KAFKA_TOPIC, value: {{ .Values.kafka.topic | quote }}}
- {name: TALLY_KAFKA_DLQ_TOPIC, value: {{ .Values.kafka.dlqTopic | quote }}}
- {name: TALLY_REDIS_URL, value: {{ .Values.redis.url | quote }}}
- {name: TALLY_REDIS_PREFIX, value: {{ .Values.redis.prefix | quote }}}
- {name: TALLY_CLICKHOUSE_URL, value: {{ .Values.clickhouse.url | quote }}}
- {name: TALLY_CLICKHOUSE_DATABASE, value: {{ .Values.clickhouse.database | quote }}}
- {name: TALLY_POSTGRES_URL, value: {{ .Values.postgres.url | quote }}}
- {name: TALLY_LOG_FORMAT, value: json}
{{- end -}}
