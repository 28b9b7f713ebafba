"""Sources and sinks: input planning, image and video files, written outputs, detection records, reports."""
