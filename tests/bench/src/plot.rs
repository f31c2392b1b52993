//! Draws `upgrade-cost.png`: instructions per upgrade against stored data, log-log, with the IC's 300B limit.
//!
//! Text goes through plotters' `ab_glyph` backend with DejaVu Sans from the `dejavu` crate, so no system font
//! library (fontconfig, freetype) is needed.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;

use crate::fit::Crossing;
use crate::measure::{IC_INSTALL_LIMIT, MIB};
use crate::report::{format_size, group_digits};
use crate::results::{Results, Series};

pub const FONT: &str = "sans-serif";
pub(crate) const SIZE: (u32, u32) = (1200, 760);
pub const SERIES_COLORS: [RGBColor; 3] = [RGBColor(31, 119, 180), RGBColor(44, 160, 44), RGBColor(214, 39, 40)];

pub fn register_font() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        if plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular()).is_err() {
            panic!("DejaVu Sans from the dejavu crate is not a valid font");
        }
    });
}

pub(crate) type LogLogChart<'a, DB> = ChartContext<'a, DB, Cartesian2d<LogCoord<f64>, LogCoord<f64>>>;

/// A log-log chart on `root` with its caption and mesh drawn; axes are `(description, range)`.
pub(crate) fn log_log_chart<'a, DB: DrawingBackend>(
    root: &'a DrawingArea<DB, plotters::coord::Shift>,
    caption: &str,
    (x_desc, x_range): (&str, std::ops::Range<f64>),
    (y_desc, y_range): (&str, std::ops::Range<f64>),
) -> Result<LogLogChart<'a, DB>, Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    let mut chart = ChartBuilder::on(root)
        .caption(caption, (FONT, 26))
        .margin(20)
        .x_label_area_size(55)
        .y_label_area_size(80)
        .build_cartesian_2d(x_range.log_scale(), y_range.log_scale())?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_label_formatter(&|x| group_digits(x.round() as u64))
        .y_label_formatter(&|y| short_count(*y))
        .label_style((FONT, 16))
        .axis_desc_style((FONT, 18))
        .draw()?;
    Ok(chart)
}

/// Writes the plot to `path` (PNG).
pub fn write_png(path: &Path, results: &Results) -> Result<(), Box<dyn std::error::Error>> {
    register_font();
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    draw(&root, results)?;
    root.present()?;
    Ok(())
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    results: &Results,
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let limit = IC_INSTALL_LIMIT as f64;
    let measured: Vec<&Series> = results.child_series().chain([&results.baseline]).collect();
    // Log axes cannot show 0 MiB: the 0 MiB points are in the table only.
    let points = |s: &Series| s.points().into_iter().filter(|p| p.0 > 0.0).collect::<Vec<_>>();
    let largest_mib = measured.iter().flat_map(|s| points(s)).map(|p| p.0).fold(1.0, f64::max);
    let crossing_mib = match results.baseline_crossing() {
        Crossing::Measured(x) | Crossing::Extrapolated(x) => Some(x),
        Crossing::Never => None,
    };
    let x_max = crossing_mib.unwrap_or(largest_mib).max(largest_mib) * 3.0;
    let y_min = measured
        .iter()
        .flat_map(|s| points(s))
        .map(|p| p.1)
        .fold(limit, f64::min)
        / 3.0;

    let mut chart = log_log_chart(
        root,
        "Instructions of one upgrade vs stored data (wasmi fuel, in-process replica)",
        ("stored data (MiB, log scale)", 1.0..x_max),
        ("instructions per upgrade (log scale)", y_min..limit * 10.0),
    )?;

    for (series, color) in measured.iter().zip(SERIES_COLORS) {
        chart
            .draw_series(LineSeries::new(points(series), color.stroke_width(2)).point_size(4))?
            .label(format!("{} (measured)", series.label))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }

    if let (Some(fit), Some(crossing)) = (results.baseline_fit(), crossing_mib) {
        let color = SERIES_COLORS[2];
        // From the baseline's last measured point to the right edge, evenly spaced on the log axis.
        let start = points(&results.baseline).last().map_or(1.0, |p| p.0);
        let samples = 60;
        let line = (0..=samples).map(|i| {
            let x = start * (x_max / start).powf(f64::from(i) / f64::from(samples));
            (x, fit.at(x))
        });
        let kind = match results.baseline_crossing() {
            Crossing::Extrapolated(_) => "extrapolated",
            _ => "fitted",
        };
        chart
            .draw_series(DashedLineSeries::new(line, 8, 6, color.stroke_width(2)))?
            .label(format!("{}: linear fit, {kind}", results.baseline.label))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(1)));
        chart.draw_series([Cross::new((crossing, limit), 8, color.stroke_width(3))])?;
        chart.draw_series([Text::new(
            format!("{} ({kind})", format_size(crossing)),
            (crossing / 20.0, limit * 2.0),
            (FONT, 16).into_font().color(&color),
        )])?;
    }

    if let Some(failed) = results.baseline.costs.iter().find(|c| !c.succeeded()) {
        let color = SERIES_COLORS[2];
        let x = failed.data_bytes as f64 / MIB as f64;
        chart
            .draw_series(DashedLineSeries::new(
                [(x, y_min), (x, limit * 10.0)],
                3,
                5,
                color.stroke_width(2),
            ))?
            .label(format!(
                "{}: upgrade fails (trap) at {} MiB",
                results.baseline.label,
                group_digits(x as u64)
            ))
            .legend(move |(x, y)| PathElement::new(vec![(x + 9, y - 6), (x + 9, y + 6)], color.stroke_width(2)));
    }

    chart
        .draw_series(LineSeries::new([(1.0, limit), (x_max, limit)], BLACK.stroke_width(2)))?
        .label("IC limit: 300B instructions per install_code")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(2)));

    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FONT, 16))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// `1500000` → `1.5M`; `300000000000` → `300B`.
pub(crate) fn short_count(n: f64) -> String {
    let (value, unit) = match n {
        n if n >= 1e12 => (n / 1e12, "T"),
        n if n >= 1e9 => (n / 1e9, "B"),
        n if n >= 1e6 => (n / 1e6, "M"),
        n if n >= 1e3 => (n / 1e3, "K"),
        n => (n, ""),
    };
    let digits = if value < 10.0 && value.fract() != 0.0 { 1 } else { 0 };
    format!("{value:.digits$}{unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_shortened() {
        assert_eq!(short_count(300e9), "300B");
        assert_eq!(short_count(1.5e6), "1.5M");
        assert_eq!(short_count(1e13), "10T");
        assert_eq!(short_count(20.0), "20");
    }
}
