# Sourced by start.sh and test.sh: points inspector at ../shared's GPT-2 config/tokenizer and DailyDialog when present.
shared="$(cd .. && pwd)/shared"
if [ -d "$shared/data/dailydialog" ]; then export INSPECTOR_DAILYDIALOG_DIR=${INSPECTOR_DAILYDIALOG_DIR:-$shared/data/dailydialog}; fi
if [ -d "$shared/models/gpt2-offline" ]; then export INSPECTOR_GPT2_OFFLINE_DIR=${INSPECTOR_GPT2_OFFLINE_DIR:-$shared/models/gpt2-offline}; fi
