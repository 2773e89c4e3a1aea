name 'monitoring'
maintainer 'fleet'
description 'Metrics and alerting snowflake'
version '0.1.0'
