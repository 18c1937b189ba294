//! The host-side schedule: which path points every image needs, cut into groups of images and chunks of
//! rows that fit the device.
//!
//! A *row* is one path point of one image. Gradient rows are evaluated forward and backward and summed
//! into the attribution with their quadrature weight; forward rows are evaluated forward only (F(x), F(b),
//! probes along the path). A *chunk* is the rows of one submission: its gradient rows come first, so the
//! backward dispatches cover a prefix of the row table. A *group* is a run of images whose inputs and
//! running attribution totals stay on the GPU while its chunks run; it ends with one readback.

use crate::quadrature::Quadrature;
use std::ops::Range;

/// The path points of one image.
#[derive(Clone, Debug, PartialEq)]
pub struct PathPlan {
    /// Gradient evaluations: alphas and quadrature weights.
    pub gradient: Quadrature,
    /// Per gradient point, the width of the cell around it that the point stands for (soft kernels
    /// average ReLU masks and max-pool choices over it). Empty: points.
    pub cells: Vec<f64>,
    /// Per gradient point, the image's accumulator its weighted gradient goes to. Empty: all to 0.
    pub slots: Vec<usize>,
    /// Forward-only evaluations.
    pub forward: Vec<f64>,
}

impl PathPlan {
    /// A quadrature's points, each a point (no cell) summed into accumulator 0.
    pub fn new(gradient: Quadrature, forward: Vec<f64>) -> PathPlan {
        PathPlan {
            gradient,
            cells: Vec::new(),
            slots: Vec::new(),
            forward,
        }
    }

    /// A quadrature's points, each standing for a cell of the path as wide as its weight (soft
    /// kernels), summed into accumulator 0: with midpoint nodes, cells that partition [0, 1].
    pub fn cells(gradient: Quadrature, forward: Vec<f64>) -> PathPlan {
        PathPlan {
            cells: gradient.weights.clone(),
            ..PathPlan::new(gradient, forward)
        }
    }

    /// Forward-only points.
    pub fn forward(forward: Vec<f64>) -> PathPlan {
        PathPlan::new(
            Quadrature {
                alphas: Vec::new(),
                weights: Vec::new(),
            },
            forward,
        )
    }

    /// Cell width of gradient point k (0 for a point).
    pub fn cell(&self, k: usize) -> f64 {
        self.cells.get(k).copied().unwrap_or(0.0)
    }

    /// Accumulator of gradient point k.
    pub fn slot(&self, k: usize) -> usize {
        self.slots.get(k).copied().unwrap_or(0)
    }
}

/// How much one chunk and one group may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    pub rows_per_chunk: usize,
    pub images_per_group: usize,
}

/// Which point of its image's plan a row evaluates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Point {
    /// Index into `PathPlan::gradient`.
    Gradient(usize),
    /// Index into `PathPlan::forward`.
    Forward(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Row {
    /// Index of the image in the whole batch.
    pub image: usize,
    pub point: Point,
}

/// Consecutive gradient rows of one image within a chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// Index of the image in the whole batch.
    pub image: usize,
    pub first_row: usize,
    pub count: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Chunk {
    /// Gradient rows, then forward rows.
    pub rows: Vec<Row>,
    pub gradient_rows: usize,
    pub spans: Vec<Span>,
    /// Index of the chunk's first row among all rows of its group.
    pub first_row: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    pub images: Range<usize>,
    pub chunks: Vec<Chunk>,
    /// Rows over all chunks of the group.
    pub rows: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    pub groups: Vec<Group>,
}

impl Schedule {
    /// Cuts the plans of a batch into groups and chunks. Rows are taken image by image, each image's
    /// forward rows before its gradient rows (so F(x) and F(b) come with its first chunk), and gradient
    /// rows keep their order across chunks.
    pub fn new(plans: &[PathPlan], capacity: Capacity) -> Schedule {
        assert!(capacity.rows_per_chunk > 0 && capacity.images_per_group > 0);
        let mut groups = Vec::new();
        for start in (0..plans.len()).step_by(capacity.images_per_group) {
            let images = start..(start + capacity.images_per_group).min(plans.len());
            let stream = images.clone().flat_map(|image| {
                let plan = &plans[image];
                let forward = (0..plan.forward.len()).map(move |k| Row {
                    image,
                    point: Point::Forward(k),
                });
                let gradient = (0..plan.gradient.len()).map(move |k| Row {
                    image,
                    point: Point::Gradient(k),
                });
                forward.chain(gradient)
            });
            let mut chunks: Vec<Chunk> = Vec::new();
            let mut pending: Vec<Row> = Vec::with_capacity(capacity.rows_per_chunk);
            let mut rows = 0;
            for row in stream {
                pending.push(row);
                if pending.len() == capacity.rows_per_chunk {
                    chunks.push(Chunk::from_rows(std::mem::take(&mut pending), rows));
                    rows += capacity.rows_per_chunk;
                }
            }
            if !pending.is_empty() {
                let n = pending.len();
                chunks.push(Chunk::from_rows(pending, rows));
                rows += n;
            }
            groups.push(Group {
                images,
                chunks,
                rows,
            });
        }
        Schedule { groups }
    }

    pub fn chunk_count(&self) -> usize {
        self.groups.iter().map(|g| g.chunks.len()).sum()
    }

    pub fn max_chunk_rows(&self) -> usize {
        self.groups
            .iter()
            .flat_map(|g| &g.chunks)
            .map(|c| c.rows.len())
            .max()
            .unwrap_or(0)
    }

    pub fn max_group_images(&self) -> usize {
        self.groups
            .iter()
            .map(|g| g.images.len())
            .max()
            .unwrap_or(0)
    }

    pub fn max_group_rows(&self) -> usize {
        self.groups.iter().map(|g| g.rows).max().unwrap_or(0)
    }
}

impl Chunk {
    fn from_rows(rows: Vec<Row>, first_row: usize) -> Chunk {
        let (mut ordered, forward): (Vec<Row>, Vec<Row>) = rows
            .into_iter()
            .partition(|r| matches!(r.point, Point::Gradient(_)));
        let gradient_rows = ordered.len();
        let mut spans: Vec<Span> = Vec::new();
        for (i, row) in ordered.iter().enumerate() {
            match spans.last_mut() {
                Some(s) if s.image == row.image => s.count += 1,
                _ => spans.push(Span {
                    image: row.image,
                    first_row: i,
                    count: 1,
                }),
            }
        }
        ordered.extend(forward);
        Chunk {
            rows: ordered,
            gradient_rows,
            spans,
            first_row,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quadrature::Rule;

    fn plans(images: usize, steps: usize) -> Vec<PathPlan> {
        let q = Rule::GaussLegendre.nodes(steps).unwrap();
        vec![PathPlan::new(q, vec![0.0, 1.0]); images]
    }

    #[test]
    fn one_chunk_when_everything_fits() {
        let s = Schedule::new(
            &plans(3, 5),
            Capacity {
                rows_per_chunk: 100,
                images_per_group: 10,
            },
        );
        assert_eq!(s.groups.len(), 1);
        let c = &s.groups[0].chunks[0];
        assert_eq!((c.rows.len(), c.gradient_rows), (21, 15));
        assert_eq!(
            c.spans
                .iter()
                .map(|s| (s.image, s.first_row, s.count))
                .collect::<Vec<_>>(),
            [(0, 0, 5), (1, 5, 5), (2, 10, 5)]
        );
        assert!(
            c.rows[15..]
                .iter()
                .all(|r| matches!(r.point, Point::Forward(_)))
        );
    }

    #[test]
    fn every_point_is_scheduled_once_in_order() {
        let p = plans(7, 9);
        for (rows, images) in [(1, 1), (4, 3), (11, 2), (13, 7), (1000, 100)] {
            let s = Schedule::new(
                &p,
                Capacity {
                    rows_per_chunk: rows,
                    images_per_group: images,
                },
            );
            let mut seen = vec![Vec::new(); 7];
            let mut forward = [0; 7];
            for g in &s.groups {
                let mut first = 0;
                for c in &g.chunks {
                    assert!(c.rows.len() <= rows && c.first_row == first);
                    first += c.rows.len();
                    for r in &c.rows[..c.gradient_rows] {
                        assert!(g.images.contains(&r.image));
                        let Point::Gradient(k) = r.point else {
                            panic!("forward row among gradient rows")
                        };
                        seen[r.image].push(k);
                    }
                    forward.iter_mut().enumerate().for_each(|(i, f)| {
                        *f += c.rows[c.gradient_rows..]
                            .iter()
                            .filter(|r| r.image == i)
                            .count()
                    });
                    let spanned: usize = c.spans.iter().map(|s| s.count).sum();
                    assert_eq!(spanned, c.gradient_rows);
                }
                assert_eq!(first, g.rows);
            }
            for s in &seen {
                assert_eq!(s, &(0..9).collect::<Vec<_>>());
            }
            assert!(forward.iter().all(|&f| f == 2));
        }
    }
}
