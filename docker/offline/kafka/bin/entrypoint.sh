#!/bin/sh
# Runs one KRaft node configured, as in the official apache/kafka image, from
# the environment: every KAFKA_<NAME> becomes the property <name> (lower case,
# "_" -> ".", "__" -> "_", "___" -> "-"), except the JVM's own KAFKA_HEAP_OPTS,
# KAFKA_OPTS, KAFKA_JVM_PERFORMANCE_OPTS and KAFKA_LOG4J_OPTS. CLUSTER_ID formats
# the log directories on first start (kept on later starts).
set -eu

CONFIG=/opt/kafka/config/server.properties
: "${CLUSTER_ID:?set CLUSTER_ID (a base64 UUID, e.g. from kafka-storage random-uuid)}"

: >"$CONFIG"
env | grep '^KAFKA_' | while IFS='=' read -r name value; do
    case "$name" in
        KAFKA_HEAP_OPTS | KAFKA_OPTS | KAFKA_JVM_PERFORMANCE_OPTS | KAFKA_LOG4J_OPTS | KAFKA_VERSION) continue ;;
    esac
    key=$(printf '%s' "${name#KAFKA_}" | tr '[:upper:]' '[:lower:]' | sed -e 's/___/-/g' -e 's/__/@/g' -e 's/_/./g' -e 's/@/_/g')
    printf '%s=%s\n' "$key" "$value" >>"$CONFIG"
done

java_run() {
    # shellcheck disable=SC2086 # the options are word lists
    exec java ${KAFKA_HEAP_OPTS:--Xmx1g -Xms1g} ${KAFKA_JVM_PERFORMANCE_OPTS:--XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true} \
        -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties ${KAFKA_OPTS:-} \
        -cp '/opt/kafka/libs/*' "$@"
}

java -cp '/opt/kafka/libs/*' -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties \
    kafka.tools.StorageTool format --ignore-formatted --cluster-id "$CLUSTER_ID" --config "$CONFIG" >/dev/null
java_run kafka.Kafka "$CONFIG"
