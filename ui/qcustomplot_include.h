#pragma once
// QCustomPlot's header uses Qt's "signals"/"slots"/"emit"/"foreach" keywords, which whisker_ui turns off
// (QT_NO_KEYWORDS, because LibTorch's headers use those words). Include it through this file,
// after any LibTorch header.
#define signals Q_SIGNALS
#define slots Q_SLOTS
#define emit Q_EMIT
#define foreach Q_FOREACH
#include <qcustomplot.h>
#undef signals
#undef slots
#undef emit
#undef foreach
