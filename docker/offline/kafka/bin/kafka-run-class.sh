#!/bin/sh
# The tools' launcher, as in the Apache Kafka distribution: a class and its arguments.
# shellcheck disable=SC2086 # the options are a word list
exec java ${KAFKA_HEAP_OPTS:--Xmx256m} -Dlog4j2.configurationFile=/opt/kafka/config/log4j2-tools.properties \
    -cp '/opt/kafka/libs/*' "$@"
